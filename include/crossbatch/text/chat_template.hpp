// Chat templates of the shipped families without a Jinja interpreter: ChatML (SmolLM2, Qwen2 and
// Qwen2.5, each with its default system prompt) and Llama 3 (3.0; 3.1/3.2 with the "Cutting
// Knowledge Date" system header). The format is recognised from the Jinja source in
// tokenizer_config.json (or chat_template.jinja) or chosen by name; any other template is a
// config_error. Rendering equals transformers' apply_chat_template(..., tokenize=False) for system,
// user and assistant turns.
#pragma once

#include <chrono>
#include <ctime>
#include <filesystem>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/unicode.hpp"

namespace crossbatch::text {

struct chat_message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class chat_format {
  chatml,    // <|im_start|>role\ncontent<|im_end|>\n, optional default system prompt
  llama3,    // Llama 3.0: bos + <|start_header_id|>role<|end_header_id|>\n\ntrim(content)<|eot_id|>
  llama3_1,  // Llama 3.1/3.2: always a system header with the knowledge cutoff and today's date
};

class chat_template {
 public:
  chat_format format = chat_format::chatml;
  std::optional<std::string>
      default_system;     // ChatML: used when the first message is not a system one
  std::string bos_token;  // Llama 3: "<|begin_of_text|>"
  std::optional<std::string> date_string;  // Llama 3.1+: "26 Jul 2024"; unset means today

  // By name: chatml, smollm2, qwen2, qwen2.5, llama3, llama3.1, llama3.2.
  static chat_template from_name(std::string_view name) {
    chat_template t;
    if (name == "chatml") return t;
    if (name == "smollm2") {
      t.default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
      return t;
    }
    if (name == "qwen2") {
      t.default_system = "You are a helpful assistant.";
      return t;
    }
    if (name == "qwen2.5") {
      t.default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
      return t;
    }
    t.bos_token = "<|begin_of_text|>";
    if (name == "llama3") {
      t.format = chat_format::llama3;
      return t;
    }
    if (name == "llama3.1" || name == "llama3.2") {
      t.format = chat_format::llama3_1;
      if (name == "llama3.1") t.date_string = "26 Jul 2024";
      return t;
    }
    throw config_error("unknown chat template name '" + std::string(name) +
                       "' (known: chatml, smollm2, qwen2, qwen2.5, llama3, llama3.1, llama3.2)");
  }

  // Recognises a Jinja chat template by its content; `where` names its origin in errors.
  static chat_template from_source(std::string_view source, std::string bos_token,
                                   const std::string& where) {
    const std::string src(source);
    chat_template t;
    t.bos_token = std::move(bos_token);
    const bool chatml = src.find("<|im_start|>") != std::string::npos &&
                        src.find("<|im_end|>") != std::string::npos;
    const bool llama = src.find("<|start_header_id|>") != std::string::npos &&
                       src.find("<|end_header_id|>") != std::string::npos &&
                       src.find("<|eot_id|>") != std::string::npos;
    if (src.find("<think>") != std::string::npos ||
        src.find("reasoning_content") != std::string::npos)
      throw config_error(where +
                         ": chat template with reasoning blocks (<think>) is not supported");
    if (chatml && !llama) {
      t.format = chat_format::chatml;
      // The default system prompt is a literal '<|im_start|>system\n...<|im_end|>\n' string.
      static const std::regex system_literal(
          R"re('<\|im_start\|>system(?:\n|\\n)((?:[^'\\]|\\.)*?)<\|im_end\|>(?:\n|\\n)')re");
      std::smatch m;
      if (std::regex_search(src, m, system_literal)) t.default_system = unescape_jinja(m[1].str());
      return t;
    }
    if (llama && !chatml) {
      if (src.find("Cutting Knowledge Date") != std::string::npos) {
        t.format = chat_format::llama3_1;
        if (src.find("strftime_now") == std::string::npos) {
          static const std::regex date_literal(R"re(set\s+date_string\s*=\s*"([^"]*)")re");
          std::smatch m;
          if (std::regex_search(src, m, date_literal)) t.date_string = m[1].str();
        }
      } else {
        t.format = chat_format::llama3;
      }
      if (t.bos_token.empty()) t.bos_token = "<|begin_of_text|>";
      return t;
    }
    throw config_error(
        where +
        ": unknown chat template (supported: ChatML as in SmolLM2 and Qwen2/2.5, Llama 3, 3.1 and "
        "3.2); choose one by name with chat_template::from_name");
  }

  // From a model directory's tokenizer_config.json ("chat_template" and "bos_token"), or its
  // chat_template.jinja, which transformers 5 writes beside it.
  static chat_template from_tokenizer_config(const std::string& dir_or_file) {
    namespace fs = std::filesystem;
    fs::path config = dir_or_file;
    if (fs::is_directory(config)) config /= "tokenizer_config.json";
    std::string bos;
    std::optional<std::string> source;
    std::string where = config.string();
    if (fs::exists(config)) {
      const json j = parse_json(read_text_file(config.string()), config.string());
      const json_node root(j, config.string());
      if (auto b = root.find("bos_token")) bos = token_content(*b);
      if (auto c = root.find("chat_template")) {
        if (c->value().is_string()) {
          source = c->string();
        } else if (c->value().is_array()) {  // named templates: take "default"
          for (std::size_t i = 0; i < c->size(); ++i)
            if (c->at(i).string_or("name", "") == "default")
              source = c->at(i).at("template").string();
          if (!source) c->fail("no template named 'default'");
        }
        where += ": chat_template";
      }
    }
    const fs::path jinja = config.parent_path() / "chat_template.jinja";
    if (!source && fs::exists(jinja)) {
      source = read_text_file(jinja.string());
      where = jinja.string();
    }
    if (!source)
      throw config_error(config.string() +
                         ": no chat_template (and no chat_template.jinja beside it)");
    return from_source(*source, bos, where);
  }

  // The prompt text for messages (roles system, user or assistant); with add_generation_prompt the
  // assistant header that starts the model's turn is appended.
  std::string render(std::span<const chat_message> messages, bool add_generation_prompt) const {
    if (messages.empty())
      throw value_error("chat_template: a conversation needs at least one message");
    for (const auto& m : messages)
      if (m.role != "system" && m.role != "user" && m.role != "assistant")
        throw value_error("chat_template: unsupported role '" + m.role +
                          "' (system, user or assistant)");
    std::string out;
    switch (format) {
      case chat_format::chatml:
        if (default_system && messages.front().role != "system")
          out += "<|im_start|>system\n" + *default_system + "<|im_end|>\n";
        for (const auto& m : messages)
          out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        if (add_generation_prompt) out += "<|im_start|>assistant\n";
        break;
      case chat_format::llama3:
        for (std::size_t i = 0; i < messages.size(); ++i) {
          if (i == 0) out += bos_token;
          out += header(messages[i].role) + std::string(python_strip(messages[i].content)) +
                 "<|eot_id|>";
        }
        if (add_generation_prompt) out += header("assistant");
        break;
      case chat_format::llama3_1: {
        std::size_t first = 0;
        std::string system;
        if (messages.front().role == "system") {
          system = python_strip(messages.front().content);
          first = 1;
        }
        out += bos_token + header("system") +
               "Cutting Knowledge Date: December 2023\nToday Date: " +
               (date_string ? *date_string : today()) + "\n\n" + system + "<|eot_id|>";
        for (std::size_t i = first; i < messages.size(); ++i)
          out += header(messages[i].role) + std::string(python_strip(messages[i].content)) +
                 "<|eot_id|>";
        if (add_generation_prompt) out += header("assistant");
        break;
      }
    }
    return out;
  }

  std::string render(const std::vector<chat_message>& messages, bool add_generation_prompt) const {
    return render(std::span<const chat_message>(messages), add_generation_prompt);
  }

 private:
  static std::string header(const std::string& role) {
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n";
  }

  // strftime("%d %b %Y") of today, as the Llama 3.2 template's strftime_now gives.
  static std::string today() {
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
    return buf;
  }

  // A special token in tokenizer_config.json: a string or {"content": ...}.
  static std::string token_content(const json_node& n) {
    if (n.value().is_string()) return n.string();
    return n.at("content").string();
  }

  // The value of a single-quoted Jinja string literal's body.
  static std::string unescape_jinja(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\' || i + 1 == s.size()) {
        out += s[i];
        continue;
      }
      const char n = s[++i];
      out += n == 'n' ? '\n' : n == 't' ? '\t' : n == 'r' ? '\r' : n;
    }
    return out;
  }
};

}  // namespace crossbatch::text
