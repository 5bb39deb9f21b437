// Config parsing (both rope layouts, head_dim, every family's field names) and bad input in model
// directories: a missing or wrongly typed config field, an unknown model_type, a missing tensor, a
// misshaped, truncated or wrong-dtype npy. Each error must name the file or field and expectation.
#define BOOST_TEST_MODULE model_config
#include <fstream>

#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/model/bert.hpp"
#include "crossbatch/model/decoder.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

namespace {

template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    BOOST_ERROR("no error thrown");
  } catch (const E& e) {
    for (const auto& n : needles)
      BOOST_CHECK_MESSAGE(std::string(e.what()).find(n) != std::string::npos,
                          "'" << e.what() << "' lacks '" << n << "'");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(rope_layouts_and_head_dim) {
  json v4 = cbtest::tiny_config("llama");
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 8.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 32}};
  v4["head_dim"] = 16;
  json v5 = cbtest::tiny_config("llama");
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                           {"factor", 8.0},           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 32}};
  v5["head_dim"] = 16;
  const auto a = parse_config(v4, "v4"), b = parse_config(v5, "v5");
  for (const auto* c : {&a, &b}) {
    BOOST_TEST(c->rope.type == "llama3");
    BOOST_TEST(c->rope.theta == 500000.0f);
    BOOST_TEST(c->rope.factor == 8.0f);
    BOOST_TEST(c->head_dim == 16);
  }
  const auto fa = rope_inv_freq(a.rope, 16), fb = rope_inv_freq(b.rope, 16);
  BOOST_TEST(fa == fb);
  // llama3 scaling leaves the highest frequency alone and divides the lowest by `factor`.
  rope_parameters plain{500000.0f};
  const auto f0 = rope_inv_freq(plain, 16);
  BOOST_TEST(fa[0] == f0[0]);
  BOOST_TEST(fa[7] == f0[7] / 8.0f, boost::test_tools::tolerance(1e-6f));
  // The default layout when no scaling is given.
  const auto d = parse_config(cbtest::tiny_config("qwen2"), "q");
  BOOST_TEST(d.rope.type == "default");
  BOOST_TEST(d.qkv_bias);
  BOOST_TEST(d.head_dim == 8);
  BOOST_TEST(d.num_kv_heads == 2);
}

BOOST_AUTO_TEST_CASE(config_errors_name_the_field) {
  auto bad = [](const std::function<void(json&)>& edit, std::initializer_list<std::string> needles,
                const std::string& family = "llama") {
    json c = cbtest::tiny_config(family);
    edit(c);
    expect_error<config_error>([&] { parse_config(c, "dir/config.json"); }, needles);
  };
  bad([](json& c) { c.erase("hidden_size"); }, {"dir/config.json", "'hidden_size'", "missing"});
  bad([](json& c) { c["num_hidden_layers"] = "two"; },
      {"'num_hidden_layers'", "must be an integer", "string"});
  bad([](json& c) { c["model_type"] = "mamba"; }, {"unknown model_type 'mamba'"});
  bad([](json& c) { c.erase("model_type"); }, {"'model_type'"});
  bad([](json& c) { c["num_key_value_heads"] = 3; }, {"multiple of num_key_value_heads"});
  bad([](json& c) { c["hidden_act"] = "swoosh"; }, {"unsupported activation 'swoosh'"});
  bad(
      [](json& c) {
        c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
      },
      {"rope type 'yarn'"});
  bad(
      [](json& c) {
        c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 2.0}};
      },
      {"'low_freq_factor'"});
  bad([](json& c) { c["vocab_size"] = 0; }, {"'vocab_size' must be positive"});
  bad([](json& c) { c.erase("n_embd"); }, {"'n_embd'"}, "gpt2");
  bad([](json& c) { c["eos_token_id"] = "x"; }, {"'eos_token_id'"});
  // Malformed JSON and a missing file.
  const auto dir = cbtest::scratch_dir("cfg");
  std::ofstream(dir / "config.json") << "{\"model_type\": \"llama\", ";
  expect_error<format_error>([&] { load_config((dir / "config.json").string()); },
                             {"config.json", "not valid JSON"});
  expect_error<io_error>([&] { load_config((dir / "nope.json").string()); }, {"nope.json"});
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(weight_errors_name_the_tensor) {
  const auto dir = cbtest::tiny_model_dir("qwen2");
  BOOST_CHECK_NO_THROW(decoder_model<float>::load(dir));
  const std::string k = dir + "/model.layers.1.self_attn.k_proj.weight.npy";
  const std::string kb = dir + "/model.layers.0.self_attn.k_proj.bias.npy";
  // Wrong shape.
  const auto good = load_npy<float>(k);
  save_npy(k, cbtest::random_tensor<float>({16, 31}, 1));
  expect_error<shape_error>([&] { decoder_model<float>::load(dir); },
                            {"k_proj.weight.npy", "expected shape (16, 32), got (16, 31)"});
  // Wrong dtype.
  tensor<std::int32_t> ints({16, 32});
  std::fill(ints.data(), ints.data() + ints.size(), 1);
  save_npy(k, ints);
  expect_error<format_error>([&] { decoder_model<float>::load(dir); },
                             {"k_proj.weight.npy", "floating-point"});
  // Truncated.
  save_npy(k, good);
  fs::resize_file(k, fs::file_size(k) - 7);
  expect_error<format_error>([&] { decoder_model<float>::load(dir); },
                             {"k_proj.weight.npy", "truncated"});
  save_npy(k, good);
  // Missing (qwen2 needs q/k/v biases).
  fs::remove(kb);
  expect_error<format_error>([&] { decoder_model<float>::load(dir); },
                             {"missing tensor 'model.layers.0.self_attn.k_proj.bias'", "(16,)"});
  // Not a decoder / not an encoder.
  expect_error<config_error>([&] { bert_model<float>::load(dir); }, {"is not a BERT encoder"});
  expect_error<io_error>([&] { decoder_model<float>::load(dir + "/nowhere"); }, {"nowhere"});
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(half_and_bfloat16_models_track_float) {
  // The same random weights loaded as half and bfloat16 give logits within those dtypes' tolerance.
  const auto dir = cbtest::tiny_model_dir("llama", 3);
  context<cpu> ctx;
  auto logits_of = [&]<class T>() {
    auto m = decoder_model<T>::load(dir);
    batch_session<T> s(ctx, m, {{1, 5, 9, 2}}, 1);
    s.prefill();
    return s.logits_host();
  };
  const auto f = logits_of.template operator()<float>();
  const auto h = logits_of.template operator()<half>();
  const auto b = logits_of.template operator()<bfloat16>();
  // Logits are O(1) here; the scale factor covers 2 layers of rounding in the narrow type.
  cbtest::check_close<half>(h.view(), f.view(), "half vs float", 2.0f);
  cbtest::check_close<bfloat16>(b.view(), f.view(), "bfloat16 vs float", 2.0f);
  fs::remove_all(dir);
}
