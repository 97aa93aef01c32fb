#include "fhir/narrative.h"

#include <cctype>
#include <cstring>
#include <pugixml.hpp>
#include <set>

namespace taproot::fhir {
namespace {

const std::set<std::string_view>& AllowedElements() {
  static const std::set<std::string_view> kAllowed = {
      "a",    "abbr",  "acronym", "b",        "big", "blockquote", "br",    "caption",
      "cite", "code",  "col",     "colgroup", "dd",  "dfn",        "div",   "dl",
      "dt",   "em",    "h1",      "h2",       "h3",  "h4",         "h5",    "h6",
      "hr",   "i",     "img",     "li",       "ol",  "p",          "pre",   "q",
      "samp", "small", "span",    "strong",   "sub", "sup",        "table", "tbody",
      "td",   "tfoot", "th",      "thead",    "tr",  "tt",         "ul",    "var"};
  return kAllowed;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The local name of a possibly prefixed XML name ("xhtml:p" -> "p").
std::string_view Local(const char* name) {
  const char* colon = std::strchr(name, ':');
  return colon ? std::string_view(colon + 1) : std::string_view(name);
}

std::string Check(const pugi::xml_node& node, int depth) {
  if (depth > 200) return "the narrative nests too deeply";
  for (const pugi::xml_node& child : node.children()) {
    if (child.type() == pugi::node_pi) return "processing instructions are not allowed";
    if (child.type() != pugi::node_element) continue;
    std::string name = Lower(Local(child.name()));
    if (!AllowedElements().count(name)) return "the element <" + name + "> is not allowed";
    for (const pugi::xml_attribute& attr : child.attributes()) {
      std::string attr_name = Lower(Local(attr.name()));
      if (attr_name.rfind("on", 0) == 0) {
        return "the event attribute '" + attr_name + "' is not allowed";
      }
      std::string value = Lower(attr.value());
      value.erase(0, value.find_first_not_of(" \t\r\n"));
      if ((attr_name == "href" || attr_name == "src") &&
          (value.rfind("javascript:", 0) == 0 || value.rfind("vbscript:", 0) == 0)) {
        return "script links are not allowed";
      }
    }
    std::string inner = Check(child, depth + 1);
    if (!inner.empty()) return inner;
  }
  return "";
}

}  // namespace

std::string CheckNarrative(std::string_view xhtml) {
  pugi::xml_document doc;
  pugi::xml_parse_result parsed = doc.load_buffer(
      xhtml.data(), xhtml.size(), pugi::parse_default | pugi::parse_pi, pugi::encoding_utf8);
  if (!parsed)
    return std::string("the narrative is not well-formed XHTML: ") + parsed.description();
  pugi::xml_node root = doc.document_element();
  if (Lower(Local(root.name())) != "div") return "the narrative's root element must be <div>";
  const char* prefix_end = std::strchr(root.name(), ':');
  std::string ns_attr =
      prefix_end ? "xmlns:" + std::string(root.name(), prefix_end - root.name()) : "xmlns";
  if (std::string_view(root.attribute(ns_attr.c_str()).value()) != "http://www.w3.org/1999/xhtml") {
    return "the narrative's <div> must be in the XHTML namespace";
  }
  for (const pugi::xml_node& n : doc.children()) {
    if (n.type() == pugi::node_pi) return "processing instructions are not allowed";
  }
  // The root itself: its attributes follow the same rules.
  pugi::xml_document wrapper;
  wrapper.append_copy(root);
  return Check(wrapper, 0);
}

}  // namespace taproot::fhir
