#include "search/normalize.h"

#include <utf8proc.h>

#include <cstdlib>

#include "common/clock.h"

namespace taproot::search {

std::string NormalizeText(std::string_view text) {
  // ASCII fast path: most indexed text is plain ASCII.
  bool ascii = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  std::string folded;
  if (ascii) {
    folded.reserve(text.size());
    for (char c : text) {
      folded.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    }
  } else {
    utf8proc_uint8_t* out = nullptr;
    utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &out,
                     static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | UTF8PROC_CASEFOLD |
                                                    UTF8PROC_STRIPMARK));
    if (n < 0) {  // not valid UTF-8 (cannot happen for parsed JSON): keep the bytes
      folded.assign(text);
    } else {
      folded.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    }
    std::free(out);
  }
  // Collapse whitespace and trim.
  std::string result;
  result.reserve(folded.size());
  bool space = false;
  for (char c : folded) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !result.empty();
      continue;
    }
    if (space) result.push_back(' ');
    space = false;
    result.push_back(c);
  }
  return result;
}

std::optional<TimeRange> DateRange(std::string_view text) {
  auto digits = [&](size_t pos, size_t n) {
    if (pos + n > text.size()) return false;
    for (size_t i = pos; i < pos + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
    }
    return true;
  };
  if (!digits(0, 4)) return std::nullopt;
  std::string full(text);
  int64_t step = 0;  // microseconds in the last unit given, 0 for calendar months and years
  int calendar = 0;  // 1: a year, 2: a month
  if (text.size() == 4) {
    calendar = 1;
  } else if (text.size() == 7 && text[4] == '-' && digits(5, 2)) {
    calendar = 2;
  } else if (text.size() == 10 && text[7] == '-' && digits(8, 2)) {
    step = 86400LL * 1000000;
  } else if (text.size() > 10 && text[10] == 'T') {
    // Seconds are optional in search values; a zone defaults to UTC.
    size_t zone = text.find_first_of("Z+-", 11);
    std::string time(
        text.substr(11, zone == std::string_view::npos ? std::string_view::npos : zone - 11));
    std::string tz(zone == std::string_view::npos ? "Z" : std::string(text.substr(zone)));
    if (time.size() == 5) {
      time += ":00";
      step = 60LL * 1000000;
    } else if (time.size() == 8) {
      step = 1000000;
    } else if (time.size() > 9 && time[8] == '.') {
      size_t frac = time.size() - 9;
      step = 1;
      for (size_t i = frac; i < 6; ++i) step *= 10;
    } else {
      return std::nullopt;
    }
    full = std::string(text.substr(0, 11)) + time + tz;
  } else {
    return std::nullopt;
  }
  auto start = ParseFhirDateTime(full);
  if (!start.ok()) return std::nullopt;
  TimeRange r{*start, 0};
  if (calendar) {
    int year = std::atoi(full.substr(0, 4).c_str());
    int month = calendar == 2 ? std::atoi(full.substr(5, 2).c_str()) : 12;
    int64_t next = calendar == 1 ? DaysFromCivil(year + 1, 1, 1)
                                 : (month == 12 ? DaysFromCivil(year + 1, 1, 1)
                                                : DaysFromCivil(year, month + 1, 1));
    r.end = next * 86400LL * 1000000 - 1;
  } else {
    r.end = r.start + step - 1;
  }
  return r;
}

}  // namespace taproot::search
