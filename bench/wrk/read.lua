-- GET Patient/p<N> for random N in [0, 999]: read-by-id over HTTP.
math.randomseed(42)
request = function()
  return wrk.format("GET", "/fhir/Patient/p" .. math.random(0, 999))
end
