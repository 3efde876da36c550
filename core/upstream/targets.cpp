#include "core/upstream/targets.hpp"

#include <boost/asio/ip/address.hpp>

#include <charconv>

namespace weir::core::upstream {

std::shared_ptr<const TargetSet> make_target_set(std::vector<Target> targets, uint64_t version) {
  auto set = std::make_shared<TargetSet>();
  set->targets = std::move(targets);
  set->version = version;
  set->abi.reserve(set->targets.size());
  set->abi_metadata.resize(set->targets.size());
  for (size_t i = 0; i < set->targets.size(); ++i) {
    const auto& t = set->targets[i];
    auto& meta = set->abi_metadata[i];
    for (const auto& [k, v] : t.metadata) {
      meta.push_back(weir_str_t{k.data(), k.size()});
      meta.push_back(weir_str_t{v.data(), v.size()});
    }
    weir_target_t abi{};
    abi.struct_size = sizeof(weir_target_t);
    abi.address = weir_str_t{t.address.data(), t.address.size()};
    abi.weight = t.weight;
    abi.healthy = t.healthy ? 1 : 0;
    abi.id = weir_str_t{t.id.data(), t.id.size()};
    abi.priority = t.priority;
    abi.metadata = meta.empty() ? nullptr : meta.data();
    abi.metadata_count = t.metadata.size();
    set->abi.push_back(abi);
  }
  return set;
}

AddressKind parse_address(std::string_view address, boost::asio::ip::tcp::endpoint& out,
                          std::string& host_out, uint16_t& port_out, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      error = "expected [ipv6]:port";
      return AddressKind::invalid;
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      error = "missing :port";
      return AddressKind::invalid;
    }
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    error = "invalid port";
    return AddressKind::invalid;
  }
  if (host.empty()) {
    error = "missing host";
    return AddressKind::invalid;
  }
  port_out = static_cast<uint16_t>(port);
  boost::system::error_code aec;
  auto ip = boost::asio::ip::make_address(std::string(host), aec);
  if (!aec) {
    out = boost::asio::ip::tcp::endpoint(ip, port_out);
    return AddressKind::literal;
  }
  host_out = std::string(host);
  return AddressKind::name;
}

} // namespace weir::core::upstream
