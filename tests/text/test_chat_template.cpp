// Chat templates: our rendering equals transformers' apply_chat_template(..., tokenize=False) for
// the real SmolLM2, Qwen2, Qwen2.5, ChatML and Llama 3/3.1/3.2 templates on several conversations;
// the format is recognised from tokenizer_config.json; unknown templates are errors.
#define BOOST_TEST_MODULE text_chat_template
#include <fstream>

#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "fixtures.hpp"

using namespace crossbatch;
using namespace crossbatch::text;

namespace {

std::vector<chat_message> conversation(const json& c) {
  std::vector<chat_message> out;
  for (const auto& m : c) out.push_back({m["role"], m["content"]});
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(renders_like_transformers) {
  const json e = cbtest::load_json("chat/expected.json");
  int checked = 0;
  for (const auto& c : e["cases"]) {
    const std::string name = c["template"];
    const std::string source =
        crossbatch::text::read_text_file(cbtest::text_data("chat/" + name + ".jinja"));
    chat_template t =
        chat_template::from_source(source, c["bos_token"].is_null() ? "" : c["bos_token"], name);
    if (c["options"].contains("date_string"))
      t.date_string = c["options"]["date_string"].get<std::string>();
    const auto conv = conversation(e["conversations"][c["conversation"].get<std::size_t>()]);
    const std::string got = t.render(conv, c["add_generation_prompt"].get<bool>());
    BOOST_TEST(got == c["text"].get<std::string>(),
               name << " conversation " << c["conversation"] << " gen "
                    << c["add_generation_prompt"] << "\n got  '" << cbtest::escape(got)
                    << "'\n want '" << cbtest::escape(c["text"]) << "'");
    ++checked;
  }
  BOOST_TEST(checked >= 100);
}

BOOST_AUTO_TEST_CASE(recognises_formats) {
  auto from = [](const std::string& name) {
    return chat_template::from_source(read_text_file(cbtest::text_data("chat/" + name + ".jinja")),
                                      "", name);
  };
  const auto smol = from("smollm2");
  BOOST_TEST((smol.format == chat_format::chatml));
  BOOST_TEST(*smol.default_system ==
             "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  BOOST_TEST(*from("qwen2_5").default_system ==
             "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  BOOST_TEST(*from("qwen2").default_system == "You are a helpful assistant.");
  BOOST_TEST(!from("chatml").default_system.has_value());
  BOOST_TEST((from("llama3").format == chat_format::llama3));
  BOOST_TEST(from("llama3").bos_token == "<|begin_of_text|>");
  BOOST_TEST((from("llama3_1").format == chat_format::llama3_1));
  BOOST_TEST(*from("llama3_1").date_string == "26 Jul 2024");
  BOOST_TEST(!from("llama3_2").date_string.has_value());  // strftime_now: today
  BOOST_CHECK_THROW(from("unknown"), config_error);
  BOOST_CHECK_THROW(chat_template::from_source("{{ '<|im_start|>' }}<think>", "", "qwen3"),
                    config_error);
  BOOST_CHECK_THROW(chat_template::from_name("gemma"), config_error);
}

BOOST_AUTO_TEST_CASE(from_tokenizer_config_and_names) {
  const std::vector<chat_message> conv = {{"user", "Hi"}};
  const auto smol = chat_template::from_tokenizer_config(cbtest::text_data("smollm2"));
  BOOST_TEST(smol.render(conv, true) == chat_template::from_name("smollm2").render(conv, true));
  BOOST_TEST(smol.render(conv, true) ==
             "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
             "Face<|im_end|>\n"
             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const auto llama =
      chat_template::from_tokenizer_config(cbtest::text_data("llama3/tokenizer_config.json"));
  BOOST_TEST(llama.render(conv, false) ==
             "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  const auto qwen = chat_template::from_tokenizer_config(cbtest::text_data("qwen2"));
  BOOST_TEST(qwen.render(conv, false) == chat_template::from_name("qwen2.5").render(conv, false));
  // transformers 5 writes the template to chat_template.jinja beside tokenizer_config.json.
  const auto dir = cbtest::scratch_dir("chat_jinja");
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": {"content": "<|begin_of_text|>"}})";
  std::ofstream(dir / "chat_template.jinja")
      << read_text_file(cbtest::text_data("chat/llama3_1.jinja"));
  const auto l31 = chat_template::from_tokenizer_config(dir.string());
  BOOST_TEST(l31.render(conv, true) == chat_template::from_name("llama3.1").render(conv, true));
  BOOST_CHECK_THROW(chat_template::from_tokenizer_config(cbtest::text_data("minilm")),
                    config_error);
  // Llama 3.2 with no date given uses today's, formatted like strftime("%d %b %Y").
  const std::string today = chat_template::from_name("llama3.2").render(conv, false);
  BOOST_TEST(today.find("Today Date: ") != std::string::npos);
  BOOST_TEST(today.find("Today Date: 26 Jul 2024") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_conversations) {
  const auto t = chat_template::from_name("chatml");
  BOOST_CHECK_THROW(t.render(std::vector<chat_message>{}, true), value_error);
  BOOST_CHECK_THROW(t.render(std::vector<chat_message>{{"tool", "x"}}, true), value_error);
}

// The rendered prompt encodes with the special tokens matched, as the model expects.
BOOST_AUTO_TEST_CASE(rendered_prompt_tokenizes_with_special_tokens) {
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("smollm2/tokenizer.json"));
  const auto t = chat_template::from_tokenizer_config(cbtest::text_data("smollm2"));
  const auto ids = tok.encode(t.render(std::vector<chat_message>{{"user", "What is 2+2?"}}, true));
  BOOST_TEST(ids.front() == *tok.token_to_id("<|im_start|>"));
  BOOST_TEST(std::count(ids.begin(), ids.end(), *tok.token_to_id("<|im_end|>")) == 2);
  BOOST_TEST(tok.decode(ids, false) ==
             t.render(std::vector<chat_message>{{"user", "What is 2+2?"}}, true));
}
