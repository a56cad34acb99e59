import AuthtapModel

/// One root cause per failure. When a specific rule explains a failed exchange, the generic rules that describe
/// the same response (a malformed request, a refused grant, an error at the callback, a server failure, a body
/// that is not JSON) do not add errors of their own: they are kept at info severity and listed in the root
/// finding's `related`. Of the findings left about one exchange, the most severe is the root; among equals, the
/// rule for the cause the server itself named, then the most specific.
enum RootCause {
    /// Rules that describe a failure without naming its cause, least telling last.
    static let generic: [RuleID] = [
        "non-json-response", "upstream-error", "invalid-request", "invalid-grant", "authorization-error",
    ]

    /// The rule that reports each class a server can name.
    static let ruleForClass: [ErrorClass: RuleID] = [
        .codeReused: "code-reuse", .codeExpired: "code-expired", .deviceExpired: "code-expired",
        .redirectURIMismatch: "redirect-uri-mismatch", .pkceMismatch: "pkce-mismatch",
        .invalidClient: "invalid-client", .refreshExpired: "refresh-token-reuse",
        .refreshRevoked: "refresh-token-reuse", .refreshInvalid: "refresh-token-reuse",
        .invalidScope: "invalid-scope", .unsupportedGrantType: "unsupported-grant-type",
        .clockSkew: "clock-skew", .jwtInvalid: "jwt-invalid", .wrongEndpoint: "wrong-endpoint",
        .stateMismatch: "state-mismatch", .codeInvalid: "invalid-grant", .invalidGrant: "invalid-grant",
        .invalidRequest: "invalid-request", .accessDenied: "authorization-error",
        .interactionRequired: "authorization-error", .serverError: "upstream-error", .rateLimited: "upstream-error",
    ]

    static func assign(_ findings: inout [Finding], subjects: [Int: Int64], facts: [Int64: ExchangeFacts]) {
        let isGeneric = { (f: Finding) in generic.contains(f.rule) }
        // Fold generic errors into a specific one that covers their exchange (a warning, such as a wrong label,
        // stays: it is a problem of its own).
        var specificAt: [Int64: Int] = [:]
        for s in findings.indices where findings[s].severity == .error && !isGeneric(findings[s]) {
            for e in findings[s].exchanges where specificAt[e] == nil { specificAt[e] = s }
        }
        for g in findings.indices where findings[g].severity == .error && isGeneric(findings[g]) {
            if let subject = subjects[g], let s = specificAt[subject] { fold(g, into: s, &findings) }
        }
        // The root of each exchange's remaining findings.
        var bySubject: [Int64: [Int]] = [:]
        for i in findings.indices where findings[i].severity >= .warning {
            if let subject = subjects[i] { bySubject[subject, default: []].append(i) }
        }
        for (subject, indices) in bySubject {
            let top = indices.map { findings[$0].severity }.max() ?? .warning
            // A warning is a root cause only where something failed: the server reported an error there.
            if top == .warning, facts[subject]?.error == nil { continue }
            let candidates = indices.filter { findings[$0].severity == top }
            let named = facts[subject]?.errorClass.flatMap { ruleForClass[$0] }
            let root =
                candidates.first { findings[$0].rule == named }
                ?? candidates.first { !isGeneric(findings[$0]) }
                ?? candidates.min { rank(findings[$0].rule) < rank(findings[$1].rule) }
            guard let root else { continue }
            findings[root].rootCause = true
            for i in candidates where i != root {
                if isGeneric(findings[i]) && top == .error {
                    fold(i, into: root, &findings)
                } else {
                    findings[i].rootCause = false
                    add(findings[i].rule, to: root, &findings)
                }
            }
        }
    }

    static func rank(_ rule: RuleID) -> Int { generic.firstIndex(of: rule) ?? generic.count }

    static func fold(_ g: Int, into root: Int, _ findings: inout [Finding]) {
        findings[g].severity = .info
        findings[g].rootCause = false
        add(findings[g].rule, to: root, &findings)
    }

    static func add(_ rule: RuleID, to root: Int, _ findings: inout [Finding]) {
        var related = findings[root].related ?? []
        if rule != findings[root].rule, !related.contains(rule) { related.append(rule) }
        findings[root].related = related.isEmpty ? nil : related
    }
}
