import AuthtapModel

/// Finds what still looks like a secret in a record (a capture row, a HAR entry from any tool) without
/// ever showing it: each field is masked with the recording rules, and a field that masking would change
/// holds a secret. Masking is idempotent on masked text, so an authtap capture audits clean.
public enum SecretAudit {
    /// One field that holds something secret-looking: where, and what kinds of secret (never the value).
    public struct Hit: Sendable, Equatable {
        public var location: String
        public var kinds: [String]
    }

    public static func hits(in exchange: Exchange, masker: Masker) -> [Hit] {
        var hits: [Hit] = []
        func check(_ location: String, _ before: String, _ after: String) {
            guard before != after else { return }
            var counts: [String: Int] = [:]
            for kind in kinds(in: after) { counts[kind, default: 0] += 1 }
            for kind in kinds(in: before) { counts[kind, default: 0] -= 1 }
            hits.append(Hit(location: location, kinds: counts.filter { $0.value > 0 }.keys.sorted()))
        }
        var ignored: [OAuthParam] = []
        check("request.url", exchange.target, masker.maskURL(exchange.target, location: .unrecorded, params: &ignored))
        for (side, headers) in [("request", exchange.requestHeaders), ("response", exchange.responseHeaders)] {
            for field in headers {
                let masked = masker.maskHeaders([field], location: .unrecorded, params: &ignored)
                check("\(side).header \(field.name)", field.value, masked.first?.value ?? field.value)
            }
        }
        for (side, body, headers) in [
            ("request", exchange.requestBody, exchange.requestHeaders),
            ("response", exchange.responseBody, exchange.responseHeaders),
        ] {
            let decoded = masker.decodedBody(body, headers: headers)
            let masked = masker.maskDecoded(decoded, headers: headers, location: .unrecorded, params: &ignored)
            check(
                "\(side).body", String(decoding: decoded.bytes, as: UTF8.self),
                String(decoding: masked.bytes, as: UTF8.self))
        }
        if let detail = exchange.errorDetail { check("error", detail, masker.maskFreeText(detail)) }
        return hits
    }

    /// The kinds of the markers in a text, in order.
    static func kinds(in text: String) -> [String] {
        let bytes = Array(text.utf8)
        return Masker.markerRanges(in: bytes).compactMap { range in
            let inner = bytes[(range.lowerBound + 8)..<(range.upperBound - 1)]
            guard let space = inner.firstIndex(of: 0x20) else { return nil }
            return String(decoding: inner[..<space], as: UTF8.self)
        }
    }
}
