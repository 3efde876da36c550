// Test modules whose behaviour each test case plugs in, so one module type covers many cases.
#pragma once

#include <weir/sdk.hpp>
#include <weir/testing/fake_host.hpp>

#include <doctest/doctest.h>

#include <functional>

namespace sdk_tests {

using weir::testing::FakeConfig;
using weir::testing::FakeHost;
using weir::testing::FakeHttp;
using weir::testing::FakeTarget;

/// Called by ProbeConfig's constructor.
inline std::function<void(weir::sdk::ConfigReader&)>& config_probe() {
  static std::function<void(weir::sdk::ConfigReader&)> fn;
  return fn;
}

/// A Config type that runs config_probe().
struct ProbeConfig {
  explicit ProbeConfig(weir::sdk::ConfigReader& cfg) {
    if (config_probe()) {
      config_probe()(cfg);
    }
  }
};

/// Sets config_probe() for the scope.
struct WithConfigProbe {
  explicit WithConfigProbe(std::function<void(weir::sdk::ConfigReader&)> fn) {
    config_probe() = std::move(fn);
  }
  ~WithConfigProbe() { config_probe() = nullptr; }
  WithConfigProbe(const WithConfigProbe&) = delete;
  WithConfigProbe& operator=(const WithConfigProbe&) = delete;
};

} // namespace sdk_tests
