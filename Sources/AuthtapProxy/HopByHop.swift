import NIOHTTP1

/// RFC 9110 §7.6.1: the fields that belong to one connection, which a proxy does not forward.
enum HopByHop {
    static let requestFields: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
        "upgrade",
    ]
    static let responseFields: Set<String> = ["connection", "keep-alive", "proxy-connection"]

    /// Whether a name has the length of one above (te 2, trailer/upgrade 7, connection/keep-alive 10,
    /// proxy-connection 16, proxy-authenticate 18, proxy-authorization 19): other names need no lowercased copy.
    private static func mayBeHopByHop(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2, 7, 10, 16, 18, 19: return true
        default: return false
        }
    }

    /// The headers to forward: without hop-by-hop fields and those the Connection header names.
    /// Most messages carry none, and then go on as they came, with no copy.
    static func endToEnd(_ headers: HTTPHeaders, hopByHop: Set<String> = requestFields) -> HTTPHeaders {
        // Lower-case names to drop: the hop-by-hop fields present, and the tokens of Connection.
        var drop: [String] = []
        for (name, value) in headers where mayBeHopByHop(name) {
            let lower = name.lowercased()
            guard hopByHop.contains(lower) else { continue }
            drop.append(lower)
            if lower == "connection" {
                for var token in value.split(separator: ",") {
                    // Trimmed here rather than with Foundation's trimmingCharacters (the event loop).
                    while token.first == " " || token.first == "\t" { token = token.dropFirst() }
                    while token.last == " " || token.last == "\t" { token = token.dropLast() }
                    if !token.isEmpty { drop.append(token.lowercased()) }
                }
            }
        }
        if drop.isEmpty { return headers }
        // One pass that keeps the rest in order (nginx and most servers send `Connection: keep-alive`
        // on every response, so this runs for nearly every one of them).
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count)
        for (name, value) in headers where !drop.contains(where: { sameName(name, lowercased: $0) }) {
            kept.add(name: name, value: value)
        }
        return kept
    }

    /// ASCII case-insensitive `name == lower` (`lower` already lower case), without a copy.
    static func sameName(_ name: String, lowercased lower: String) -> Bool {
        let a = name.utf8, b = lower.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            guard x >= UInt8(ascii: "A"), x <= UInt8(ascii: "Z"), x | 0x20 == y else { return false }
        }
        return true
    }

    /// Joins every Cookie field into one, pairs separated by "; " (RFC 9113 §8.2.3), where the first one was.
    static func joinCookies(_ headers: inout HTTPHeaders) {
        let crumbs = headers["cookie"]
        guard crumbs.count > 1 else { return }
        var joined = HTTPHeaders()
        joined.reserveCapacity(headers.count - crumbs.count + 1)
        var placed = false
        for (name, value) in headers {
            guard sameName(name, lowercased: "cookie") else {
                joined.add(name: name, value: value)
                continue
            }
            if !placed { joined.add(name: name, value: crumbs.joined(separator: "; ")) }
            placed = true
        }
        headers = joined
    }
}
