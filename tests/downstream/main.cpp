// Uses the installed headers: builds a tensor and checks one value.
#include <crossbatch/crossbatch.hpp>

int main() {
  auto t = crossbatch::full<float>({2, 3}, 1.5f);
  return t(1, 2) == 1.5f ? 0 : 1;
}
