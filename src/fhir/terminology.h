// Code systems and value sets: whether a code is in a value set (FHIRPath memberOf, and later
// search's :in and :not-in and required bindings) and whether one code subsumes another
// (subsumes/subsumedBy, later :below and :above).
//
// Sources: the 672 ValueSets and 495 CodeSystems of the R4 specification, compiled into the
// binary (R4Terminology()), plus ValueSets and CodeSystems added at run time (the server's own,
// with Add) and, for canonical URLs neither holds, a loader the server fills from its store.
// Value sets are expanded on first use from their expansion or their compose (included and
// excluded concepts, whole code systems, imported value sets, and the filters is-a,
// descendent-of, generalizes, =, in, regex on the code) and the expansion is cached.
//
// Thread-safety: every method may be called concurrently; a mutex guards the definitions and the
// cache. Expansions are immutable once made and shared.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace taproot::fhir {

class Terminology {
 public:
  // Finds a ValueSet or CodeSystem ("ValueSet" or "CodeSystem" as `type`) by canonical URL
  // (without version) when the terminology does not hold it; nullopt if there is none.
  using Loader = std::function<std::optional<boost::json::value>(const std::string& type,
                                                                 const std::string& url)>;

  // `base` (may be null) is consulted for what this one does not hold: a server's terminology
  // layers its own resources over the R4 one.
  explicit Terminology(const Terminology* base = nullptr, Loader loader = nullptr);

  // Adds or replaces a ValueSet or CodeSystem, keyed by its url. Invalid if it has none.
  Status Add(const boost::json::object& resource);

  // Drops cached expansions: the server calls this when a ValueSet or CodeSystem that the loader
  // reads changes.
  void Invalidate();

  // Whether system|code is in the value set. NotFound if the value set is unknown;
  // NotImplemented if it cannot be expanded here (a code system it needs whole is unknown, or a
  // filter is unsupported).
  Result<bool> Contains(const std::string& valueset_url, const std::string& system,
                        const std::string& code) const;
  // For a bare code (a `code` or string element): in the value set only if the value set draws
  // on one code system and the code is in it (FHIRPath R4 memberOf).
  Result<bool> ContainsCode(const std::string& valueset_url, const std::string& code) const;

  // Whether code a subsumes code b in the code system (a == b counts). NotFound if the code
  // system is unknown.
  // Every system|code in the value set (its expansion), as (system, code) pairs, sorted.
  Result<std::vector<std::pair<std::string, std::string>>> Members(
      const std::string& valueset_url) const;

  // The codes a code subsumes (itself and its descendants) or is subsumed by (itself and its
  // ancestors) in the code system. NotFound if the code system is unknown.
  Result<std::vector<std::string>> Below(const std::string& system, const std::string& code) const;
  Result<std::vector<std::string>> Above(const std::string& system, const std::string& code) const;

  Result<bool> Subsumes(const std::string& system, const std::string& a,
                        const std::string& b) const;

 private:
  struct CodeSystem {
    bool complete = false;  // content = complete: every code is listed
    std::vector<std::string> codes;
    std::unordered_map<std::string, std::vector<std::string>> parents;
  };
  struct Expansion {
    std::unordered_set<std::string> members;  // system + '|' + code
    std::set<std::string> systems;
  };

  Result<std::shared_ptr<const Expansion>> Expand(const std::string& url, int depth) const;
  std::shared_ptr<const CodeSystem> FindCodeSystem(const std::string& url) const;
  std::optional<boost::json::object> FindValueSet(const std::string& url) const;
  Status AddIncludes(const boost::json::value* includes, bool exclude, Expansion& out,
                     int depth) const;
  // The codes of `system` that a compose include's filter selects.
  Result<std::vector<std::string>> Filter(const CodeSystem& cs, const std::string& system,
                                          const boost::json::object& filter) const;
  static bool IsA(const CodeSystem& cs, const std::string& code, const std::string& ancestor);
  static std::shared_ptr<const CodeSystem> ParseCodeSystem(const boost::json::object& resource);
  // The code and what it subsumes (below) or what subsumes it (above).
  Result<std::vector<std::string>> Related(const std::string& system, const std::string& code,
                                           bool below) const;

  const Terminology* base_;
  Loader loader_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const CodeSystem>> code_systems_;
  std::unordered_map<std::string, boost::json::object> value_sets_;
  mutable std::unordered_map<std::string, std::shared_ptr<const Expansion>> expansions_;
};

// The R4 specification's value sets and code systems. Built on first use; never destroyed.
const Terminology& R4Terminology();

}  // namespace taproot::fhir
