import AuthtapModel
import AuthtapOAuth
import Foundation

/// What the capture shows about why a callback's state may not answer the client's stored one: a second
/// sign-in started in between, and the cookie the sign-in set, compared by its masked fingerprint.
struct StateEvidence {
    /// A later authorization request of the same client, before this callback, with another state.
    var overtakenBy: ExchangeFacts?
    /// The authorization request whose state the callback carries.
    var answered: ExchangeFacts?
    /// A cookie the sign-in's start set, and what the callback sent back of it.
    var cookie: CookieCheck?
    /// The callback came as a POST (response_mode=form_post): a cross-site POST from the server's page.
    var formPost = false

    struct CookieCheck {
        var name: String
        var attributes: String
        /// nil: not sent back at all.
        var sentFingerprint: String?
        var setFingerprint: String
        var setAt: ExchangeFacts
        var missing: Bool { sentFingerprint == nil }
    }

    var isEmpty: Bool {
        overtakenBy == nil && (cookie.map { !$0.missing && $0.sentFingerprint == $0.setFingerprint } ?? true)
    }

    init(callback f: ExchangeFacts, _ c: RuleContext) {
        formPost = f.method == "POST"
        guard let state = f.value("state", .request) else { return }
        // The sign-in this state started: walk back over the requests with this state while no answer to it lies
        // between two of them (the login form and the consent ask again; two tabs interleave).
        let sent = c.authorizeByState[state] ?? []
        let answers = c.answersByState[state] ?? []
        var i = Self.firstIndex(notBefore: f.id, in: sent) - 1
        guard i >= 0 else { return }
        var steps = 0
        while i > 0, steps < 64, !Self.any(answers, between: sent[i - 1].id, and: sent[i].id) {
            i -= 1
            steps += 1
        }
        let answered = sent[i]
        self.answered = answered
        // A sign-in of the same client with another state, started after this one and before the callback.
        let key = "\(answered.ex.host) \(answered.value("client_id", .request) ?? "")"
        let mine = c.authorizeByClient[key] ?? []
        var j = Self.firstIndex(notBefore: answered.id, in: mine) + 1
        var looked = 0
        while j < mine.count, mine[j].id < f.id, looked < 64 {
            if mine[j].value("state", .request) != state {
                overtakenBy = mine[j]
                break
            }
            j += 1
            looked += 1
        }
        cookie = Self.cookieCheck(callback: f, start: answered, c)
    }

    /// The last element of `list` (in id order) before `id`.
    static func lastBefore(_ id: Int64, in list: [ExchangeFacts]) -> ExchangeFacts? {
        let i = firstIndex(notBefore: id, in: list)
        return i > 0 ? list[i - 1] : nil
    }

    /// Whether a sorted id list holds one strictly between two ids.
    static func any(_ ids: [Int64], between a: Int64, and b: Int64) -> Bool {
        var low = 0
        var high = ids.count
        while low < high {
            let mid = (low + high) / 2
            if ids[mid] <= a { low = mid + 1 } else { high = mid }
        }
        return low < ids.count && ids[low] < b
    }

    /// Binary search: the position of the first element whose id is not below `id`.
    static func firstIndex(notBefore id: Int64, in list: [ExchangeFacts]) -> Int {
        var low = 0
        var high = list.count
        while low < high {
            let mid = (low + high) / 2
            if list[mid].id < id { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The exchange that sent the browser to the authorization request (its Location carries the state), the
    /// cookies it set, and whether the callback sent them back.
    static func cookieCheck(callback f: ExchangeFacts, start auth: ExchangeFacts, _ c: RuleContext) -> CookieCheck? {
        guard let state = auth.value("state", .request),
            let starter = c.startByState[FormCoding.encode(state)]
                ?? c.startByState[state], starter.id < auth.id, starter.ex.host != auth.ex.host
        else { return nil }
        let sent = cookies(f.ex.requestHeaders.values(of: "cookie").joined(separator: "; "))
        for header in starter.ex.responseHeaders.values(of: "set-cookie") {
            let parts = header.split(separator: ";", maxSplits: 1)
            guard let pair = parts.first, let (name, fp) = cookies(String(pair)).first else { continue }
            let attributes = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            // A deletion (Max-Age=0, an Expires in the past) is not a cookie the callback should send back.
            let lower = attributes.lowercased()
            if lower.contains("max-age=0") || lower.contains("1970") { continue }
            let back = sent.first { $0.0 == name }?.1
            if back != fp {
                return CookieCheck(
                    name: name, attributes: attributes, sentFingerprint: back, setFingerprint: fp, setAt: starter)
            }
        }
        return nil
    }

    /// name → fingerprint of each masked cookie in a Cookie header (or one Set-Cookie pair).
    static func cookies(_ header: String) -> [(String, String)] {
        header.split(separator: ";").compactMap { part in
            let pair = part.trimmingCharacters(in: .whitespaces)
            guard let eq = pair.firstIndex(of: "="),
                let masked = Masker.alreadyMasked(String(pair[pair.index(after: eq)...]))
            else { return nil }
            return (String(pair[..<eq]), masked.fingerprint)
        }
    }

    /// The evidence in words, for the explanation.
    var sentence: String {
        var parts: [String] = []
        if let later = overtakenBy, let answered {
            parts.append(
                """
                a second sign-in (#\(later.id), state=\(later.value("state", .request) ?? "?")) started after the one \
                this callback answers (#\(answered.id)) and before it came back, so a client that keeps one state per \
                session now expects the newer one: two tabs, a double click, or a retry
                """)
        }
        if let cookie, cookie.missing {
            parts.append(
                """
                the cookie \(cookie.name) that #\(cookie.setAt.id) set when the sign-in started \
                (\(cookie.attributes.isEmpty ? "no attributes" : cookie.attributes)) was not sent back to the callback
                """
                    + (formPost
                        ? """
                        , which came as a cross-site POST (response_mode=form_post): browsers send SameSite=Lax \
                        and Strict cookies only on top-level GET navigations, so it needs SameSite=None; Secure
                        """ : ""))
        } else if let cookie {
            parts.append(
                """
                the cookie \(cookie.name) came back with another value (fingerprint \(cookie.sentFingerprint ?? "") \
                instead of \(cookie.setFingerprint) set at #\(cookie.setAt.id)): another sign-in overwrote it
                """)
        }
        return parts.joined(separator: "; and ")
    }

    var evidence: [String: String] {
        var e: [String: String] = [:]
        if let later = overtakenBy { e["later_sign_in"] = "#\(later.id)" }
        if let cookie {
            e["state_cookie"] = cookie.name
            e["cookie_attributes"] = cookie.attributes
            e["cookie_sent_back"] = cookie.sentFingerprint ?? "(not sent)"
            e["cookie_set_fingerprint"] = cookie.setFingerprint
            if formPost { e["callback_method"] = "POST (form_post, cross-site)" }
        }
        return e
    }
}
