import AuthtapModel
import AuthtapOAuth

/// An invalid_grant that none of the specific rules explains.
struct InvalidGrant: Rule {
    var id: RuleID { "invalid-grant" }
    var severity: Severity { .error }
    var title: String { "The server rejected the grant for a reason the evidence does not pin down" }
    var checks: String {
        """
        invalid_grant that no more specific rule explains: each candidate cause (reuse, expiry, redirect_uri, PKCE, \
        client, endpoint) ruled out, supported or unknown, and what capture would decide.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests { check(f, &c) }
    }

    /// An invalid_grant outside the code and refresh grants, or one no other rule explains.
    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard let cls = f.errorClass, let report = f.error else { return }
        if [.invalidGrant, .codeInvalid].contains(cls) && !f.isCodeGrant && !f.isRefresh {
            reportGeneric(f, report, nil, &c)
        } else if let refusal = c.codeRefusal(f), !refusal.expired, cls != .codeExpired, !hasSpecificCause(f, c) {
            let elimination = Elimination(f, c)
            if elimination.verdict?.cause == "code-expired" { return }  // code-expired reports it
            reportGeneric(f, report, elimination, &c)
        }
    }

    /// Whether a more specific rule already explains this invalid_grant.
    func hasSpecificCause(_ f: ExchangeFacts, _ c: RuleContext) -> Bool {
        if let cls = f.errorClass, [.pkceMismatch, .redirectURIMismatch, .codeReused, .codeExpired].contains(cls) {
            return true
        }
        if let auth = c.authorizeFor(f) {
            let challenge = auth.param("code_challenge", .request)
            let s256 = f.value("code_verifier_s256", .derived)
            // A plain challenge is masked (it is the verifier): compared by fingerprint.
            if let plain = challenge?.fingerprint {
                if plain != f.fingerprint("code_verifier", .request) { return true }
            } else if challenge != nil && s256 != challenge?.value {
                return true
            }
            if let a = auth.value("redirect_uri", .request), let t = f.value("redirect_uri", .request), a != t {
                return true
            }
        }
        return false
    }

    func reportGeneric(_ f: ExchangeFacts, _ report: ErrorReport, _ e: Elimination?, _ c: inout RuleContext) {
        var evidence = ["grant_type": f.grantType ?? "(none)"]
        if let e {
            evidence["candidates"] = e.summary
            if let decider = e.decider { evidence["to_decide"] = decider }
        }
        let open = e.map { $0.open.map(\.cause).joined(separator: ", ") }
        c.add(
            id, .error, "Grant rejected: \(report.code)", f,
            explanation: """
                \(f.ex.host) rejected the \(f.grantType ?? "token") grant with \(report.summary), which names no cause.
                """
                    + (open.map { " Still possible after what the capture shows: \($0)." } ?? "")
                        + """
                         Beyond what a capture can see: a code issued to another client, a grant revoked by sign-out \
                        or password change, or a code from another environment (dev vs prod tenant).
                        """,
            fix: """
                Check that the code comes from this server and this client_id, that the user session was not ended in \
                between, and read the server's audit log for the specific reason (e.g. 'Grant not found').
                """,
            evidence: evidence, candidates: e?.candidates)
    }
}
