import AuthtapModel

/// A scope refused, or granted narrower than requested.
struct InvalidScope: Rule {
    var id: RuleID { "invalid-scope" }
    var severity: Severity { .error }
    var title: String { "Scope rejected, or granted differently from requested" }
    var checks: String {
        "invalid_scope at /token, /authorize or the callback; a warning when the granted scope lacks requested scopes."
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests {
            if f.errorClass == .invalidScope, let report = f.error {
                c.add(
                    id, .error, "Scope rejected by \(f.ex.host)", f,
                    explanation: """
                        The server answered \(report.summary). Requested scope: \
                        \(f.value("scope", .request) ?? "(none in this request)").
                        """,
                    fix: """
                        Request only scopes the server defines and this client is allowed; check the client's allowed \
                        scopes and any API permissions that need admin consent.
                        """,
                    evidence: ["requested_scope": f.value("scope", .request) ?? "(none)"])
            }
            narrowed(f, &c)
        }
        for f in c.reportedOutsideToken([.invalidScope]) {
            c.addReported(
                id, .error, "Scope rejected by \(f.ex.host)", f,
                meaning:
                    "Requested scope: \(requested(f, c)).",
                fix: """
                    Request only scopes the server defines and this client is allowed; check the client's allowed \
                    scopes and any API permissions that need admin consent.
                    """)
        }
    }

    /// The scope the authorization request asked for, as far as the capture shows it.
    func requested(_ f: ExchangeFacts, _ c: RuleContext) -> String {
        c.authorizeFor(f)?.value("scope", .request) ?? f.value("scope", .request) ?? "(not captured)"
    }

    /// A successful token response that grants less than was asked for.
    func narrowed(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.tokenSucceeded, case .success(let v)? = f.json, let granted = v["scope"]?.string else { return }
        let requested = f.value("scope", .request) ?? c.authorizeFor(f)?.value("scope", .request)
        guard let requested else { return }
        let want = Set(requested.split(separator: " ").map(String.init))
        let got = Set(granted.split(separator: " ").map(String.init))
        let missing = want.subtracting(got).sorted()
        if !missing.isEmpty {
            c.add(
                id, .warning, "Granted scope lacks \(missing.joined(separator: " "))", f,
                explanation: """
                    The client asked for \"\(requested)\" and was granted \"\(granted)\" (RFC 6749 §3.3 lets the \
                    server narrow it). Calls that need \(missing.joined(separator: ", ")) will fail with \
                    403/insufficient_scope.
                    """,
                fix: "Allow those scopes for the client (or grant admin consent), or stop depending on them.",
                evidence: ["requested": requested, "granted": granted, "missing": missing.joined(separator: " ")])
        }
    }
}
