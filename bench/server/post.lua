-- wrk script: POST the V2 JSON body of one iris row.
local f = io.open(os.getenv("BODY_FILE") or "iris_request.json", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
