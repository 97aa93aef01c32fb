// Builds the server's CapabilityStatement from the model and the implemented interactions.
#pragma once

#include <string>
#include <string_view>

#include "common/json.h"
#include "fhir/model.h"

namespace taproot::api {

std::string BuildCapabilityStatement(const fhir::Model& model, const std::string& software);

}  // namespace taproot::api
