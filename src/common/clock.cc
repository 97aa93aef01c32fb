#include "common/clock.h"

#include <chrono>
#include <cstdio>

namespace taproot {
namespace {

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

void PutDigits(char* p, int64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = static_cast<unsigned>((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Used for formatting instead of gmtime_r, which takes glibc's time-zone lock on every call and
// so serialises request threads.
CivilDate CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

int DaysInMonth(int64_t y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[m - 1];
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatInstant(int64_t micros) {
  int64_t secs = FloorDiv(micros, 1000000);
  int64_t frac = micros - secs * 1000000;
  int64_t days = FloorDiv(secs, 86400);
  int64_t sod = secs - days * 86400;
  CivilDate c = CivilFromDays(days);
  std::string out = "0000-00-00T00:00:00.000000Z";
  PutDigits(&out[0], c.year, 4);
  PutDigits(&out[5], c.month, 2);
  PutDigits(&out[8], c.day, 2);
  PutDigits(&out[11], sod / 3600, 2);
  PutDigits(&out[14], sod / 60 % 60, 2);
  PutDigits(&out[17], sod % 60, 2);
  PutDigits(&out[20], frac, 6);
  return out;
}

std::string FormatHttpDate(int64_t micros) {
  static const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t secs = FloorDiv(micros, 1000000);
  int64_t days = FloorDiv(secs, 86400);
  int64_t sod = secs - days * 86400;
  CivilDate c = CivilFromDays(days);
  std::string out = "Thu, 00 Jan 0000 00:00:00 GMT";
  out.replace(0, 3, kDays[((days % 7) + 7) % 7]);
  PutDigits(&out[5], c.day, 2);
  out.replace(8, 3, kMonths[c.month - 1]);
  PutDigits(&out[12], c.year, 4);
  PutDigits(&out[17], sod / 3600, 2);
  PutDigits(&out[20], sod / 60 % 60, 2);
  PutDigits(&out[23], sod % 60, 2);
  return out;
}

Result<int64_t> ParseFhirDateTime(std::string_view s) {
  auto bad = [&] {
    return Status::Invalid("'" + std::string(s) +
                           "' is not a FHIR date, dateTime or instant (e.g. 2024-01-31 or "
                           "2024-01-31T10:00:00Z)");
  };
  int year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  if (!Digits(s, 0, 4, &year)) return bad();
  size_t pos = 4;
  if (pos < s.size()) {
    if (s[pos] != '-' || !Digits(s, pos + 1, 2, &month)) return bad();
    pos += 3;
  }
  if (pos < s.size()) {
    if (s[pos] != '-' || !Digits(s, pos + 1, 2, &day)) return bad();
    pos += 3;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) return bad();
  int64_t frac_us = 0;
  int64_t offset_s = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' || !Digits(s, pos + 1, 2, &hour) || s.size() < pos + 6 || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &minute))
      return bad();
    pos += 6;
    if (pos < s.size() && s[pos] == ':') {
      if (!Digits(s, pos + 1, 2, &second)) return bad();
      pos += 3;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int64_t scale = 100000;
        size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          frac_us += (s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return bad();
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return bad();
    if (pos >= s.size()) return bad();  // a time needs a zone in FHIR
    if (s[pos] == 'Z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int oh = 0, om = 0;
      if (!Digits(s, pos + 1, 2, &oh) || s.size() < pos + 6 || s[pos + 3] != ':' ||
          !Digits(s, pos + 4, 2, &om))
        return bad();
      offset_s = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
      pos += 6;
    } else {
      return bad();
    }
  }
  if (pos != s.size()) return bad();
  int64_t days = DaysFromCivil(year, month, day);
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  return secs * 1000000 + frac_us;
}

}  // namespace taproot
