// Hooks that let FHIRPath evaluated by the server see what the server holds.
//
// StoreResolver fills FHIRPath's resolve() hook (fhirpath::EvalOptions::resolve) from the store, so
// that an expression evaluated by the server can follow references to resources it holds:
// "Patient/123", "Patient/123/_history/2", and absolute URLs on the server's own base. Reads go
// through the caller's ReadView, so an evaluation sees one consistent snapshot.
//
// Ownership: the resolver keeps every resource it loads until it is destroyed, so the items
// FHIRPath returns stay valid; it must outlive the evaluations it serves, and the ReadView must
// outlive it. Not thread-safe: one resolver per evaluating thread.
#pragma once

#include <boost/json/value.hpp>
#include <deque>
#include <string>
#include <unordered_map>

#include "fhirpath/engine.h"
#include "store/store.h"

namespace taproot::search {

class StoreResolver {
 public:
  // base_url: the server's FHIR base ("https://host/fhir"), to recognise absolute references.
  StoreResolver(store::ReadView& view, std::string base_url);

  // The current (or named) version of the referenced resource, or null if the reference is not
  // to this server, the resource is absent or deleted, or it cannot be read.
  const boost::json::value* Resolve(const std::string& reference);

  // Sets options.resolve to call this resolver.
  void Attach(fhirpath::EvalOptions& options);

 private:
  store::ReadView& view_;
  std::string base_url_;
  std::deque<boost::json::value> loaded_;  // stable addresses for the returned pointers
  std::unordered_map<std::string, const boost::json::value*> by_reference_;
};

// A terminology loader (fhir::Terminology::Loader) that finds ValueSets and CodeSystems stored on
// the server by canonical URL (the `url` index), each lookup in its own read. Layer it over
// fhir::R4Terminology() and call Invalidate() on the Terminology when such resources change.
// The store must outlive the loader.
fhir::Terminology::Loader StoreTerminologyLoader(store::Store& store);
// The same within a snapshot the caller holds (a search's view); the view must outlive it.
fhir::Terminology::Loader ViewTerminologyLoader(store::ReadView& view);

}  // namespace taproot::search
