import AuthtapModel

/// An OAuth endpoint that failed with 5xx or could not be reached.
struct UpstreamError: Rule {
    var id: RuleID { "upstream-error" }
    var severity: Severity { .error }
    var title: String { "The authorization server failed or was unreachable" }
    var checks: String {
        "5xx, a gateway/WAF page, or connection refused/DNS failure/timeout/reset for an OAuth endpoint."
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts { check(f, &c) }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        switch f.ex.error {
        case .upstreamTLS?, .clientTLS?:
            return  // tls-fault
        case .connectionRefused?, .dnsFailure?, .connectTimeout?, .connectFailed?, .upstreamReset?, .upstreamClosed?,
            .upstreamMalformed?, .upstreamStreamReset?, .upstreamGoAway?, .upstreamHTTP2?:
            guard !f.roles.isEmpty else { return }
            c.add(
                id, .error, "Authorization server unreachable: \(f.ex.error?.rawValue ?? "")", f,
                explanation: """
                    \(f.ex.error?.sentence ?? "") \
                    (\(f.ex.host):\(f.ex.port)\(f.ex.errorDetail.map { ": \($0)" } ?? "")).
                    """,
                fix: f.ex.error == .dnsFailure
                    ? "Check the host name (a typo in the issuer URL, a missing tenant) and DNS."
                    : "Check that the server is running and reachable on that port, and firewalls in between.",
                evidence: ["error_kind": f.ex.error?.rawValue ?? ""])
        default:
            if let report = f.error, [.serverError, .rateLimited].contains(f.errorClass), (f.status ?? 0) < 500 {
                c.add(
                    id, .error, "The authorization server reports a failure on its side: \(report.code)", f,
                    explanation: """
                        \(f.ex.host)\(f.path) answered \(report.summary): \
                        \(f.errorClass == .rateLimited ? "it is throttling this client" : "the server failed").
                        """,
                    fix: f.errorClass == .rateLimited
                        ? "Back off and retry later; cache tokens instead of requesting one per call."
                        : "Retry with backoff, and check the server's status page and logs for this request.",
                    evidence: ["status": f.status.map(String.init) ?? "(none)", "error": report.code])
                return
            }
            guard let status = f.status, status >= 500 || status == 429, !f.roles.isEmpty else { return }
            c.add(
                id, .error, "The authorization server failed with HTTP \(status)", f,
                explanation: """
                    \(f.ex.host)\(f.path) answered HTTP \
                    \(status)\(f.htmlTitle.map { " (\"\($0)\")" } ?? "")\(f.error.map { ": \($0.summary)" } ?? ""). \
                    The failure is on the server side or in a gateway in front of it.
                    """,
                fix: status == 502 || status == 503 || status == 504
                    ? """
                    A gateway could not reach the server: check the server's health and the gateway's timeouts, then \
                    retry.
                    """ : "Check the server's logs for this request; retry with backoff.",
                evidence: ["status": String(status)])
        }
    }
}
