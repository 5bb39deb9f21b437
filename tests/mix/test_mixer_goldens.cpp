// The cross-batch mixers against PyTorch goldens of the reference modules
// (tests/data/goldens/mixer, made by tools/make_mixer_goldens.py): forward output, cross term,
// attention weights and every parameter gradient of the manual backward, in float32 (weights
// through load_checkpoint) and float64. The C++ backward returns no input gradient (the states come
// from a frozen model), so the golden dL/dhidden is checked against central differences of the
// float64 forward.
#define BOOST_TEST_MODULE mixer_goldens
#include <boost/mpl/list.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/train/checkpoint.hpp"
#include "crossbatch/train/mixer_backward.hpp"
#include "mix/mix_helpers.hpp"

using namespace crossbatch;
using dtypes = boost::mpl::list<float, double>;

namespace {

context<cpu> ctx;

std::string golden_root() { return cbtest::data_dir() + "/goldens/mixer"; }

nlohmann::json manifest() {
  std::ifstream f(golden_root() + "/manifest.json");
  BOOST_REQUIRE_MESSAGE(f, golden_root() << "/manifest.json missing (tools/make_mixer_goldens.py)");
  return nlohmann::json::parse(f);
}

// float64 has no dtype_traits: its tolerance is float32's scaled by the ratio of the epsilons.
template <class T>
struct tolerance {
  static constexpr double atol = dtype_traits<T>::atol, rtol = dtype_traits<T>::rtol;
};
template <>
struct tolerance<double> {
  static constexpr double ratio =
      std::numeric_limits<double>::epsilon() / dtype_traits<float>::epsilon;
  static constexpr double atol = dtype_traits<float>::atol * ratio;
  static constexpr double rtol = dtype_traits<float>::rtol * ratio;
};

// |got - want| <= atol + rtol |want| elementwise (NaN fails); returns max |got - want|. float32
// goes through the shared check_close, float64 is checked here in double.
template <class T, class A>
double compare(tensor_view<const A> got, const tensor<double>& want, const std::string& what) {
  BOOST_REQUIRE_MESSAGE(got.shape == want.shape(), what << ": shape " << to_string(got.shape)
                                                        << " vs golden "
                                                        << to_string(want.shape()));
  BOOST_REQUIRE(got.contiguous());
  cbtest::diff_stats st(tolerance<T>::atol, tolerance<T>::rtol);
  st.add(got.data, want.data(), std::size_t(want.size()));
  BOOST_CHECK_MESSAGE(st.ok(), what << " (" << (std::is_same_v<T, float> ? "float32" : "float64")
                                    << " tolerance): " << st.summary());
  return st.max_abs;
}

// npy.hpp reads float64 files narrowed to float32 (load_npy<double> does not exist): the float64
// tensors are read here from the raw array.
tensor<double> load_f64(const std::string& path) {
  const npy_array a = read_npy(path);
  BOOST_REQUIRE_MESSAGE(a.descr == "<f8", path << ": golden is " << a.descr << ", not float64");
  tensor<double> t(a.shape);
  std::memcpy(t.data(), a.bytes.data(), sizeof(double) * t.size());
  return t;
}

template <class T>
tensor<T> load_as(const std::string& path) {
  if constexpr (std::is_same_v<T, double>)
    return load_f64(path);
  else
    return load_npy<T>(path);
}

template <class T>
mixer_weights<T> load_weights(const std::string& dir) {
  auto ck = load_checkpoint(dir);  // float32, shapes checked against the config
  BOOST_REQUIRE(ck.mixer.has_value());
  if constexpr (std::is_same_v<T, float>) {
    return std::move(*ck.mixer);
  } else {
    auto w = mixer_weights<double>::allocate(ck.mixer->config);
    for (const auto& [name, shape] : mixer_weights<double>::shapes(w.config)) {
      *w.slot(name) = load_f64(dir + "/mixer." + name + ".npy");
      BOOST_REQUIRE_MESSAGE(
          w.slot(name)->shape() == shape,
          dir << ": " << name << " has shape " << to_string(w.slot(name)->shape()));
    }
    return w;
  }
}

std::vector<int> load_groups(const std::string& dir) {
  const auto g = load_npy<std::int32_t>(dir + "/groups.npy");
  return {g.data(), g.data() + g.size()};
}

tensor<double> golden(const std::string& dir, const std::string& name) {
  return load_f64(dir + "/" + name + ".npy");
}

}  // namespace

BOOST_AUTO_TEST_CASE(goldens_cover_every_variant_and_every_parameter) {
  const auto m = manifest();
  std::set<std::string> seen;
  for (const auto& [name, c] : m.at("cases").items()) {
    const std::string dir = golden_root() + "/" + name;
    const auto w = load_weights<float>(dir);
    seen.insert(std::string(to_string(w.config.kind)) + "/" + to_string(w.config.combine));
    // Every tensor the golden has is a parameter of the C++ mixer, and the other way round.
    std::set<std::string> files, params;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string f = e.path().filename().string();
      if (f.rfind("mixer.", 0) == 0) files.insert(f.substr(6, f.size() - 10));
    }
    for (const auto& [p, shape] : mixer_weights<float>::shapes(w.config)) params.insert(p);
    BOOST_TEST((files == params), name << ": golden tensors differ from the C++ parameters");
  }
  for (const auto& v : cbtest::all_variants())
    BOOST_TEST(seen.count(v.name()) == 1, "no golden for " << v.name());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(forward_and_backward_match_the_reference, T, dtypes) {
  const auto m = manifest();
  BOOST_REQUIRE(!m.at("cases").empty());
  for (const auto& [name, c] : m.at("cases").items()) {
    const std::string dir = golden_root() + "/" + name;
    const std::string what = name + (std::is_same_v<T, float> ? " float32" : " float64");
    cross_batch_mixer<T> mixer(load_weights<T>(dir));
    const auto& cfg = mixer.config();
    const auto groups = load_groups(dir);
    const auto h = load_as<T>(dir + "/hidden.npy");
    const auto dy = load_as<T>(dir + "/dout.npy");
    BOOST_REQUIRE(h.shape() == (shape_t{index_t(groups.size()), cfg.hidden_size}));

    const auto out = mixer.mix(ctx, h.view(), groups);
    const auto& ws = mixer.workspace();
    std::ostringstream errs;
    errs << what << " max |C++ - golden|: out "
         << compare<T>(tensor_view<const T>(out.view()), golden(dir, "out"), what + " out");
    errs << ", cross "
         << compare<T>(ws.cross_term(cfg), golden(dir, "cross"), what + " cross term");
    using A = mix_accum_t<T>;
    errs << ", probs "
         << compare<T>(tensor_view<const A>(ws.probs.view()), golden(dir, "probs"),
                       what + " probs");

    auto grads = zeros_like_config<T>(cfg);
    mixer_backward_workspace<T> bw;
    mixer_backward(ctx, mixer.weights, grads, tensor_view<const T>(h.view()),
                   tensor_view<const T>(dy.view()), ws, bw);
    for (const auto& [p, g] : grads.parameters())
      errs << ", d " << p << " "
           << compare<T>(tensor_view<const T>(g->view()), golden(dir, "grad." + p),
                         what + " grad " + p);
    BOOST_TEST_MESSAGE(errs.str());
  }
}

// dL/dhidden of L = sum(dout * out): the golden's autograd value against central differences of
// the C++ float64 forward (truncation ~eps^2, rounding ~1e-16 / eps).
BOOST_AUTO_TEST_CASE(input_gradient_matches_differences_of_the_forward) {
  const auto m = manifest();
  for (const auto& [name, c] : m.at("cases").items()) {
    const std::string dir = golden_root() + "/" + name;
    cross_batch_mixer<double> mixer(load_weights<double>(dir));
    const auto groups = load_groups(dir);
    auto h = load_f64(dir + "/hidden.npy");
    const auto dy = golden(dir, "dout");
    const auto want = golden(dir, "grad.hidden");
    auto loss = [&] {
      const auto out = mixer.mix(ctx, h.view(), groups);
      double s = 0;
      for (index_t i = 0; i < out.size(); ++i) s += dy.data()[i] * out.data()[i];
      return s;
    };
    const double eps = 1e-5;
    cbtest::diff_stats st(1e-6, 1e-6);  // |fd - golden| <= 1e-6 (1 + |golden|)
    for (index_t i = 0; i < h.size(); ++i) {
      const double keep = h.data()[i];
      h.data()[i] = keep + eps;
      const double up = loss();
      h.data()[i] = keep - eps;
      const double down = loss();
      h.data()[i] = keep;
      st.add((up - down) / (2 * eps), want.data()[i]);
    }
    BOOST_TEST(st.ok(), name << ": input gradient: " << st.summary());
    BOOST_TEST_MESSAGE(name << " max |central difference - golden dL/dhidden|: " << st.max_abs);
  }
}
