// Links the generated one-header translation units; building this target is the check that
// every public header compiles on its own (and twice, through its include guard).
int main() { return 0; }
