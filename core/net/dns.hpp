// Asynchronous DNS for the control thread: c-ares driven by an Asio io_context. Plugins reach it
// through the dns_query host function (ABI 1.2).
#pragma once

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace weir::core::net {

struct DnsRecord {
  uint16_t type = 0;
  uint32_t ttl = 0;
  std::string name;    // owner, lowercase, no trailing dot
  std::string address; // A / AAAA
  std::string target;  // SRV target / PTR name, lowercase, no trailing dot
  uint16_t priority = 0, weight = 0, port = 0;
  std::vector<std::string> txt;
};

struct DnsAnswer {
  enum class Status { ok, not_found, error } status = Status::error;
  std::string error;
  std::vector<DnsRecord> records; // of the asked type
  uint32_t negative_ttl = 0;
};

// Parse a DNS response message: the answer records of `type` and the SOA-derived negative TTL.
// Returns false (with `error`) for a malformed message.
bool parse_dns_response(const unsigned char* msg, size_t len, uint16_t type, DnsAnswer& out,
                        std::string& error);

// The first (best) address of a lookup_host() answer; none when it has none (or not a valid one),
// with `error` set to "cannot resolve \"NAME\": why".
std::optional<boost::asio::ip::address> first_address(const DnsAnswer& answer,
                                                      const std::string& name, std::string& error);

struct DnsSettings {
  std::vector<std::string> servers; // "ip:port", "[ipv6]:port" or "ip"; empty = the system's
  std::chrono::milliseconds timeout{2000};
  uint32_t tries = 2;
};

class DnsResolver {
public:
  // Throws std::runtime_error when c-ares cannot be set up (bad server list).
  DnsResolver(boost::asio::io_context& ioc, const DnsSettings& settings);
  ~DnsResolver(); // pending queries are dropped: their callbacks do not run
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // Ask for `type` records of `name`. `done` runs later on the io_context's thread, exactly once
  // (unless the resolver is destroyed first).
  void query(const std::string& name, uint16_t type, std::function<void(DnsAnswer)> done);

  // The addresses of a host name as getaddrinfo gives them: /etc/hosts first, then DNS (these
  // servers, timeout and tries), IPv6 and IPv4, best first (RFC 6724). Records come as A/AAAA
  // records with `address` set. `done` as for query().
  void lookup_host(const std::string& name, std::function<void(DnsAnswer)> done);

  struct Impl;

private:
  std::shared_ptr<Impl> impl_;
};

} // namespace weir::core::net
