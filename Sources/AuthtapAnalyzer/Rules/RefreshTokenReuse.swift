import AuthtapModel
import Foundation

/// A refresh token presented again after rotation, or refused as expired or revoked.
struct RefreshTokenReuse: Rule {
    var id: RuleID { "refresh-token-reuse" }
    var severity: Severity { .error }
    var title: String { "A refresh token was used again after rotation, or was rejected" }
    var checks: String {
        "Refresh token fingerprints across rotations; tells expired from revoked where the evidence allows."
    }

    func evaluate(_ c: inout RuleContext) {
        // Fingerprint → the exchange that issued it, and where it was rotated.
        var issuedBy: [String: ExchangeFacts] = [:]
        var rotatedAt: [String: ExchangeFacts] = [:]
        var revokedAt: [String: ExchangeFacts] = [:]
        for f in c.facts {
            if f.roles.contains(.revocation), let fp = f.fingerprint("token", .request) { revokedAt[fp] = f }
            guard f.roles.contains(.token) else { continue }
            let sent = f.isRefresh ? f.fingerprint("refresh_token", .request) : nil
            if let sent {
                if let rotation = rotatedAt[sent] {
                    c.add(
                        id, .error, "Refresh token used again after it was rotated", f, more: [rotation],
                        explanation: """
                            This refresh token (fingerprint \(sent)) was already exchanged at #\(rotation.id), which \
                            returned a new refresh token. Using the old one again is what rotation detects as theft \
                            (RFC 9700 §4.14.2): the server rejects \
                            it\(f.tokenSucceeded ? " (this one accepted it, so rotation is not enforced)" : "") and \
                            may revoke the whole token family, signing the user out.
                            """,
                        fix: """
                            Store the new refresh token from every refresh response before using it, and serialise \
                            refreshes: several tabs or parallel requests refreshing at once is the usual cause (use a \
                            lock or a single refresh promise).
                            """,
                        evidence: [
                            "refresh_token": f.value("refresh_token", .request) ?? sent,
                            "rotated_at": "#\(rotation.id)",
                            "first_issued_at": issuedBy[sent].map { "#\($0.id)" } ?? "(not captured)",
                        ])
                } else if !f.tokenSucceeded, let cls = f.errorClass,
                    [.invalidGrant, .refreshExpired, .refreshRevoked, .refreshInvalid].contains(cls)
                {
                    let revoke = revokedAt[sent]
                    let why = reason(cls, revokedAt: revoke, issuedAt: issuedBy[sent], now: f.start)
                    let verdict =
                        revoke != nil || cls == .refreshRevoked
                        ? "revoked"
                        : cls == .refreshExpired ? "expired" : "expired or revoked"
                    c.add(
                        id, .error, "Refresh token rejected: \(verdict)", f, more: [revoke].compactMap { $0 },
                        explanation: """
                            The refresh at \(f.ex.host) failed with \(f.error?.summary ?? "an error"): \(why).
                            """,
                        fix: """
                            Treat invalid_grant on refresh as 'sign in again': clear the stored tokens and start a new \
                            authorization. If it happens early, check the server's refresh token lifetime and idle \
                            timeout.
                            """,
                        evidence: ["refresh_token": f.value("refresh_token", .request) ?? sent])
                }
            }
            if f.tokenSucceeded, let new = f.fingerprint("refresh_token", .responseBody) {
                issuedBy[new] = issuedBy[new] ?? f
                if let sent, sent != new { rotatedAt[sent] = f }
            }
        }
    }

    /// Why the server refused a refresh token, as far as the capture tells.
    func reason(
        _ cls: ErrorClass, revokedAt revoke: ExchangeFacts?, issuedAt issued: ExchangeFacts?,
        now: Date
    ) -> String {
        if let revoke { return "it was revoked by the client at #\(revoke.id)" }
        if cls == .refreshRevoked {
            return "the server says it was revoked (sign-out, password change, admin action or a detected reuse)"
        }
        if cls == .refreshExpired { return "the server says it expired (absolute lifetime or inactivity timeout)" }
        if let issued {
            let gap = RuleContext.seconds(now.timeIntervalSince(issued.start))
            return "it was issued at #\(issued.id), \(gap) earlier, and not used since; the server gives no reason "
                + "(expired or revoked)"
        }
        return "the server gives no reason: it expired, was revoked, or was rotated by a refresh this capture did "
            + "not see"
    }
}
