// The continuous batcher (serve/batcher.hpp) on tiny random models: requests join and leave a
// running batch at step boundaries (one token per running request per boundary, rows reused),
// prompts longer than the batch's slots shift it and a full cache is compacted, and under all of
// that every request's tokens equal the same request run alone through generate() (plain) or
// lda_generate() (LDA) with its seed: batch invariance, greedy and sampled, in EOS and fixed-length
// mode, from the after model, the before model or LDA. Also per-request seeds, cancel, timeout,
// the limits (each error naming its field), the queue limit, and the background thread under
// concurrent submitters.
#define BOOST_TEST_MODULE serve_batcher
#include <boost/test/data/test_case.hpp>
#include <random>
#include <thread>

#include "crossbatch/serve/batcher.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
using namespace crossbatch::serve;
namespace bdata = boost::unit_test::data;

namespace {

const std::vector<std::string> families = {"gpt2", "llama", "qwen2"};
context<cpu> ctx;

// An after/before pair of one family: same config, different random weights.
struct pair_fixture : cbtest::model_pair {
  explicit pair_fixture(const std::string& family) : model_pair(family, 21, 22) {}
};

// The request run alone: generate() / lda_generate() with batch 1 and its seed.
std::vector<int> alone(const pair_fixture& f, const generation_request& r) {
  generation_options o{.max_new_tokens = r.max_new_tokens, .seed = r.seed};
  o.stop_at_eos = r.stop_at_eos;
  o.eos_ids = r.eos_ids;
  generation_result g;
  if (r.source.kind == logit_source::lda)
    g = lda_generate(ctx, f.after, f.before, {r.prompt}, r.source.alpha, r.sampling, o);
  else
    g = generate(ctx, r.source.kind == logit_source::after ? f.after : f.before, {r.prompt},
                 r.sampling, o);
  return g.tokens[0];
}

generation_request make_request(std::mt19937& gen, int vocab, int max_prompt, int max_new) {
  generation_request r;
  const int p = std::uniform_int_distribution<int>(1, max_prompt)(gen);
  for (int i = 0; i < p; ++i) r.prompt.push_back(std::uniform_int_distribution<int>(0, vocab - 1)(gen));
  r.max_new_tokens = std::uniform_int_distribution<int>(1, max_new)(gen);
  r.seed = gen();
  r.sampling.do_sample = gen() % 4 != 0;
  r.sampling.temperature = std::uniform_real_distribution<float>(0.5f, 1.5f)(gen);
  r.sampling.top_p = gen() % 2 ? 1.0f : 0.9f;
  r.stop_at_eos = gen() % 2;
  r.eos_ids = {int(gen() % 8)};  // small ids: some requests stop early
  return r;
}

// Runs the batcher until idle; returns the number of boundaries.
template <class B>
int drain(B& b) {
  int n = 0;
  while (b.run_once()) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(requests_join_and_leave_at_step_boundaries) {
  pair_fixture f("llama");
  batcher<float> b(ctx, f.after, nullptr, {.max_batch = 2, .max_prompt_tokens = 16, .max_new_tokens = 8});
  generation_request a{.prompt = {5, 6, 7, 8, 9}, .max_new_tokens = 4, .stop_at_eos = false};
  a.sampling.do_sample = false;
  auto ta = b.submit(a);
  b.run_once();  // a joins: prefill token + first step token
  BOOST_TEST(ta->tokens().size() == 2u);
  BOOST_TEST(b.slots() == 6);
  auto c = a;
  c.prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // longer than the batch's slots: shifts it
  c.max_new_tokens = 5;
  auto tc = b.submit(c);
  auto d = a;
  d.prompt = {40, 41};
  auto td = b.submit(d);  // no free row yet: waits
  b.run_once();
  BOOST_TEST(ta->tokens().size() == 3u);  // a went on by exactly one token
  BOOST_TEST(tc->tokens().size() == 2u);
  BOOST_TEST(td->tokens().empty());
  BOOST_TEST(b.row_of(ta) == 0);
  BOOST_TEST(b.row_of(tc) == 1);
  BOOST_TEST(b.row_pad(0) == 5);  // a's 5 prompt + 1 step slots right-aligned to 11
  BOOST_TEST(b.row_pad(1) == 0);
  b.run_once();  // a's 4th token: a leaves, d takes its row at the next boundary
  BOOST_TEST(ta->reason() == finish_reason::length);
  BOOST_TEST(ta->tokens().size() == 4u);
  BOOST_TEST(td->tokens().empty());
  b.run_once();
  BOOST_TEST(b.row_of(td) == 0);
  BOOST_TEST(td->tokens().size() == 2u);
  drain(b);
  for (const auto& [t, r] : {std::pair{ta, a}, {tc, c}, {td, d}}) {
    BOOST_TEST(t->reason() == finish_reason::length);
    BOOST_TEST(t->tokens() == alone(f, r));
  }
  BOOST_TEST(b.stats().completed == 3);
}

BOOST_DATA_TEST_CASE(batch_invariance_under_continuous_batching, bdata::make(families), family) {
  pair_fixture f(family);
  const int vocab = f.after.config.vocab_size;
  // A small cache (capacity 14 + 10 = 24) forces shifts and compactions.
  batcher<float> b(ctx, f.after, &f.before,
                   {.max_batch = 3, .max_queue = 64, .max_prompt_tokens = 14, .max_new_tokens = 10});
  std::mt19937 gen(7);
  std::vector<std::pair<std::shared_ptr<ticket>, generation_request>> all;
  int max_slots = 0, boundaries = 0;
  bool compacted = false;
  for (int i = 0; i < 24; ++i) {
    auto r = make_request(gen, vocab, 14, 10);
    const int kind = i % 3;
    r.source = kind == 0   ? logit_source{}
               : kind == 1 ? logit_source{logit_source::lda, 0.5f + float(i % 4)}
                           : logit_source{logit_source::before};
    all.push_back({b.submit(r), r});
    // Submissions arrive between boundaries, one to three boundaries apart.
    for (int k = int(gen() % 3); k >= 0; --k) {
      const int before = b.slots();
      b.run_once();
      ++boundaries;
      compacted |= b.slots() < before && b.stats().running > 0;
      max_slots = std::max(max_slots, b.slots());
    }
  }
  drain(b);
  BOOST_TEST(max_slots <= 24);
  BOOST_TEST(compacted);  // the small cache made it compact at least once
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto& [t, r] = all[i];
    BOOST_TEST((t->reason() == finish_reason::eos || t->reason() == finish_reason::length));
    BOOST_TEST(t->tokens() == alone(f, r), family << " request " << i);
  }
}

BOOST_AUTO_TEST_CASE(per_request_seeds) {
  pair_fixture f("qwen2");
  batcher<float> b(ctx, f.after, nullptr, {.max_batch = 4});
  generation_request r{.prompt = {3, 1, 4, 1, 5}, .max_new_tokens = 12, .stop_at_eos = false};
  r.sampling = {.do_sample = true, .temperature = 1.5f, .top_p = 1.0f};
  r.seed = 42;
  auto other = r;
  other.seed = 43;
  auto t1 = b.submit(r), t2 = b.submit(r), t3 = b.submit(other);
  drain(b);
  BOOST_TEST(t1->tokens() == t2->tokens());  // same seed, other row: the same tokens
  BOOST_TEST(t1->tokens() != t3->tokens());  // another seed: other draws
  BOOST_TEST(t3->tokens() == alone(f, other));
}

BOOST_AUTO_TEST_CASE(cancel_and_timeout) {
  pair_fixture f("gpt2");
  batcher<float> b(ctx, f.after, nullptr, {.max_batch = 1});
  generation_request r{.prompt = {10, 11, 12}, .max_new_tokens = 20, .stop_at_eos = false};
  r.sampling.do_sample = false;
  auto running = b.submit(r);
  auto waiting = b.submit(r);
  b.run_once();
  b.run_once();
  running->cancel();
  waiting->cancel();
  b.run_once();
  BOOST_TEST(running->reason() == finish_reason::cancelled);
  BOOST_TEST(waiting->reason() == finish_reason::cancelled);
  const auto got = running->tokens(), want = alone(f, r);
  BOOST_REQUIRE(got.size() == 3u);  // boundaries 1 (two tokens) and 2, nothing after the cancel
  BOOST_TEST(std::equal(got.begin(), got.end(), want.begin()));
  BOOST_TEST(waiting->tokens().empty());
  // A request past its timeout ends at the next boundary, running or queued.
  r.timeout = std::chrono::milliseconds(1);
  auto slow = b.submit(r), queued = b.submit(r);
  b.run_once();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  b.run_once();
  BOOST_TEST(slow->reason() == finish_reason::timeout);
  BOOST_TEST(queued->reason() == finish_reason::timeout);
  BOOST_TEST(!b.run_once());
}

BOOST_AUTO_TEST_CASE(limits_name_the_field) {
  pair_fixture f("llama");
  batcher<float> plain(ctx, f.after, nullptr,
                       {.max_batch = 1, .max_queue = 2, .max_prompt_tokens = 40, .max_new_tokens = 30});
  const auto field_of = [&](generation_request r) -> std::string {
    try {
      plain.submit(std::move(r));
    } catch (const api_error& e) {
      BOOST_TEST(e.status == 400);
      return e.field;
    }
    return "<accepted>";
  };
  const generation_request ok{.prompt = {1, 2, 3}, .max_new_tokens = 4};
  auto r = ok;
  r.prompt.clear();
  BOOST_TEST(field_of(r) == "prompt");
  r = ok;
  r.prompt.assign(41, 1);
  BOOST_TEST(field_of(r) == "prompt");  // over max_prompt_tokens
  r = ok;
  r.prompt.assign(40, 1);
  r.max_new_tokens = 30;
  BOOST_TEST(field_of(r) == "prompt");  // 40 + 30 over the model's 64 positions
  r = ok;
  r.prompt = {1, 101};
  BOOST_TEST(field_of(r) == "prompt");  // outside the vocabulary
  r = ok;
  r.max_new_tokens = 0;
  r.length_field = "max_tokens";
  BOOST_TEST(field_of(r) == "max_tokens");
  r.max_new_tokens = 31;
  BOOST_TEST(field_of(r) == "max_tokens");
  r = ok;
  r.source = {logit_source::lda, 1.0f};
  BOOST_TEST(field_of(r) == "lda_alpha");  // no before model
  r = ok;
  r.sampling = {.do_sample = true, .temperature = 0.0f};
  BOOST_TEST(field_of(r) == "temperature");
  r = ok;
  r.sampling = {.do_sample = true, .top_p = 1.5f};
  BOOST_TEST(field_of(r) == "top_p");
  // The queue holds two; the third is refused with 429 until the batcher takes one.
  plain.submit(ok);
  plain.submit(ok);
  try {
    plain.submit(ok);
    BOOST_FAIL("a third queued request was accepted");
  } catch (const api_error& e) {
    BOOST_TEST(e.status == 429);
  }
  plain.run_once();
  BOOST_CHECK_NO_THROW(plain.submit(ok));
  drain(plain);
  BOOST_TEST(plain.stats().rejected == 1);
}

BOOST_AUTO_TEST_CASE(background_thread_with_concurrent_clients) {
  pair_fixture f("qwen2");
  batcher<float> b(ctx, f.after, &f.before, {.max_batch = 4, .max_queue = 64});
  b.start();
  const int clients = 6, per_client = 5;
  std::vector<std::vector<std::pair<std::shared_ptr<ticket>, generation_request>>> got(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 gen(100 + c);
      for (int i = 0; i < per_client; ++i) {
        auto r = make_request(gen, f.after.config.vocab_size, 12, 8);
        if (i % 2) r.source = {logit_source::lda, 2.0f};
        auto t = b.submit(r);
        t->wait_done();
        got[c].push_back({t, r});
      }
    });
  for (auto& t : threads) t.join();
  b.stop();
  for (int c = 0; c < clients; ++c)
    for (const auto& [t, r] : got[c]) BOOST_TEST(t->tokens() == alone(f, r));
  BOOST_TEST(b.stats().completed == clients * per_client);
}
