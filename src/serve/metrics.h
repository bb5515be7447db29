// Prometheus text exposition of the server's counters, gauges and histograms. Thread-safe: the
// HTTP threads and the engine thread record into one registry, GET /metrics renders it.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace sllm::serve {

class Metrics {
 public:
  Metrics();

  // labels: Prometheus label pairs as written inside {}, e.g. `route="/generate",status="200"`.
  void inc(const std::string& name, const std::string& labels = {}, double by = 1);
  void set(const std::string& name, double value);
  void observe(const std::string& name, double value, const std::string& labels = {});
  double counter(const std::string& name, const std::string& labels = {}) const;
  double gauge(const std::string& name) const;

  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    std::vector<double> bounds;  // histograms
  };
  struct Hist {
    std::vector<uint64_t> counts;  // per bound, cumulative on render
    uint64_t count = 0;
    double sum = 0;
  };
  void declare(const std::string& name, const std::string& type, const std::string& help,
               std::vector<double> bounds = {});

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::map<std::string, std::map<std::string, double>> values_;  // counters and gauges
  std::map<std::string, std::map<std::string, Hist>> hists_;
};

}  // namespace sllm::serve
