-- POST a small transaction Bundle: a Patient and an Observation that refers to it by urn:uuid.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = [[{"resourceType":"Bundle","type":"transaction","entry":[
{"fullUrl":"urn:uuid:7f0a1e7e-2b8c-4a43-9f5e-0d4b1f6c2a11","resource":{"resourceType":"Patient",
 "name":[{"family":"Bench","given":["Test"]}],"gender":"female","birthDate":"1980-04-01"},
 "request":{"method":"POST","url":"Patient"}},
{"resource":{"resourceType":"Observation","status":"final",
 "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
 "subject":{"reference":"urn:uuid:7f0a1e7e-2b8c-4a43-9f5e-0d4b1f6c2a11"},
 "effectiveDateTime":"2024-01-01T10:00:00Z",
 "valueQuantity":{"value":72,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}},
 "request":{"method":"POST","url":"Observation"}}]}]]
