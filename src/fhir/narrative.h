// The rules for FHIR narrative XHTML (R4 Narrative.div, invariant txt-1): well-formed XHTML with a
// <div> root in the XHTML namespace, only the basic formatting elements HTML 4 defines (no
// scripts, forms, frames, objects, head or body, no event attributes such as onclick, no
// javascript: links, no external stylesheets). FHIRPath's htmlChecks() and the validator use it.
// Pure function; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace taproot::fhir {

// Empty if `xhtml` meets the rules, else what breaks them first.
std::string CheckNarrative(std::string_view xhtml);

}  // namespace taproot::fhir
