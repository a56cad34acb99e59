import AuthtapModel
import Foundation

/// Clocks that disagree: the server's Date against the local clock, and JWT times against either.
struct ClockSkew: Rule {
    var id: RuleID { "clock-skew" }
    var severity: Severity { .error }
    var title: String { "Clocks disagree" }
    var checks: String {
        """
        JWT iat/nbf in the future or exp already past relative to the server's Date header; the local clock \
        against the server's Date; a server refusing an assertion for its time window (Entra AADSTS700024, Google \
        'reasonable timeframe').
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests {
            check(f, &c)
            serverSays(f, &c)
        }
    }

    /// The server refused a JWT or assertion for its time window.
    func serverSays(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.errorClass == .clockSkew, let report = f.error else { return }
        let date = f.ex.responseHeaders.value(of: "date")
        let skew = f.serverDate.map { Int(saturating: $0.timeIntervalSince(f.start).rounded()) }
        c.add(
            id, .error, "The server refused a JWT for its time window", f,
            explanation: """
                \(f.ex.host) answered \(report.summary). The assertion's iat, nbf or exp falls outside what the server \
                accepts: the signing machine's clock is off, or the assertion lives too long (Google and Entra \
                allow about an hour) or was reused after it expired.
                """ + (skew.map { " The server's Date header is \($0) s from this machine's clock." } ?? ""),
            fix: """
                Synchronise the clock of the machine that signs the assertion (timedatectl set-ntp true / chrony), \
                set iat to now, exp a few minutes later, and create a new assertion for every request.
                """,
            evidence: ["server_date": date ?? "(none)", "skew_seconds": skew.map(String.init) ?? "(unknown)"])
    }

    /// The server's Date against the local clock, then each JWT's iat, nbf and exp.
    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.tokenSucceeded, case .success(let body)? = f.json else { return }
        let reference = f.serverDate
        let local = f.start
        if let reference, abs(reference.timeIntervalSince(local)) > c.options.skewTolerance {
            let skew = Int(saturating: reference.timeIntervalSince(local).rounded())
            c.add(
                id, .warning, "Local clock is \(abs(skew)) s \(skew > 0 ? "behind" : "ahead of") the server", f,
                explanation: """
                    The server's Date header says \(f.ex.responseHeaders.value(of: "date") ?? ""), while this \
                    machine's clock said \(ISO8601DateFormatter().string(from: local)) when the request left: \
                    \(abs(skew)) s apart. Token validation on this machine will see iat/nbf in the future or exp too \
                    early.
                    """,
                fix: """
                    Synchronise the clock (timedatectl set-ntp true / chrony), and give the JWT library a small leeway \
                    (30–60 s).
                    """,
                evidence: ["server_date": f.ex.responseHeaders.value(of: "date") ?? "", "skew_seconds": String(skew)])
        }
        for name in ["id_token", "access_token"] {
            guard body[name] != nil else { continue }
            guard let jwt = f.jwt(name) else { continue }
            let now = reference ?? local
            if let iat = jwt.claims["iat"]?.number, iat - now.timeIntervalSince1970 > c.options.skewTolerance {
                let d = Int(saturating: iat - now.timeIntervalSince1970)
                c.add(
                    id, .warning, "\(name) issued \(d) s in the future", f,
                    explanation: """
                        iat=\(Int(saturating: iat)) is \(d) s after \
                        \(reference == nil ? "this machine's clock" : "the server's Date header"): the server's \
                        signing clock runs ahead. Strict validators reject the token as not yet valid.
                        """,
                    fix: "Synchronise the token service's clock with NTP; allow 30–60 s leeway in validation.",
                    evidence: ["iat": String(Int(saturating: iat)), "skew_seconds": String(d)])
            }
            if let nbf = jwt.claims["nbf"]?.number, nbf - now.timeIntervalSince1970 > c.options.skewTolerance {
                let d = Int(saturating: nbf - now.timeIntervalSince1970)
                c.add(
                    id, .warning, "\(name) not valid for another \(d) s (nbf)", f,
                    explanation: """
                        nbf=\(Int(saturating: nbf)) is \(d) s in the future relative to \
                        \(reference == nil ? "this machine's clock" : "the server's Date header").
                        """,
                    fix: "Synchronise the clocks; allow a small leeway.",
                    evidence: ["nbf": String(Int(saturating: nbf)), "skew_seconds": String(d)])
            }
            if let exp = jwt.claims["exp"]?.number, exp < now.timeIntervalSince1970 {
                let d = Int(saturating: now.timeIntervalSince1970 - exp)
                c.add(
                    id, .warning, "\(name) already expired when issued (\(d) s ago)", f,
                    explanation: """
                        exp=\(Int(saturating: exp)) is \(d) s before \
                        \(reference == nil ? "this machine's clock" : "the server's Date header") at issuance.
                        """,
                    fix: "Check the token lifetime configuration and the server's clock.",
                    evidence: ["exp": String(Int(saturating: exp)), "skew_seconds": String(-d)])
            }
        }
    }
}
