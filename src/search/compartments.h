// Compartments (R4 CompartmentDefinitions for Patient, Encounter, RelatedPerson, Practitioner
// and Device, read from the compiled-in definitions): which search parameters put a resource of
// a given type in a compartment. Used by compartment search (Patient/123/Observation) and
// Patient/$everything, and later by access control ("everything about this patient").
//
// Built on first use (it parses the resource definitions once, about a third of a second);
// immutable and shared between threads afterwards.
#pragma once

#include <boost/json/fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace taproot::search {

// True if `type` ("Patient") names a compartment.
bool IsCompartment(std::string_view type);

// The parameters of resource type `type` that link it to a `compartment` compartment; empty if
// resources of that type are never in it. The compartment's own type links by its id, given as
// the single parameter "{def}".
const std::vector<std::string>& CompartmentParams(std::string_view compartment,
                                                  std::string_view type);

// The resource types that can be in the compartment, sorted.
const std::vector<std::string>& CompartmentTypes(std::string_view compartment);

// The patient whose compartment a resource version is in, from its index rows: a Patient's own
// id; otherwise the target of the first of its type's Patient-compartment parameters (in the
// CompartmentDefinition's order) that refers to a Patient; empty for resources outside every
// patient's compartment (Organization, Medication, ValueSet ...). The key by which a
// distributed database places a row (docs/scaling.md). When `resource` is given, a parameter
// without rows is read from it: for rows that leave references out (identifiers-only writes)
// or none at all; pass null when the rows are complete, which spares the FHIRPath.
std::string PatientKey(std::string_view type, std::string_view id,
                       const std::vector<store::IndexEntry>& rows,
                       const boost::json::value* resource = nullptr);

// True if a resource of `type` that refers to Patient/X through reference parameter `param` has
// X as its PatientKey: `param` reads the same single-valued element as the type's first
// Patient-compartment parameter (Observation: subject, or patient, which is subject restricted
// to Patient), so X is the first Patient that parameter holds. What IndexClause::patient_keyed
// stands on.
bool KeysPatient(std::string_view type, std::string_view param);

}  // namespace taproot::search
