import Foundation

/// Decoding of JWS compact tokens: header and claims only, never a signature check here.
public enum JWT {
    /// Three base64url segments whose first decodes to a JSON object with `alg`.
    public static func looksLikeJWT(_ value: String) -> Bool {
        // Cheap byte checks first: this runs for every secret value on the writer's path.
        var text = value
        let (dots, firstDot, secondDot) = text.withUTF8 { b -> (Int, Int, Int) in
            var dots = 0, firstDot = -1, secondDot = -1
            for i in 0..<b.count {
                let c = b[i]
                if c == UInt8(ascii: ".") {
                    dots += 1
                    if dots == 1 { firstDot = i } else if dots == 2 { secondDot = i } else { return (3, 0, 0) }
                } else if !isBase64URL(c) {
                    return (0, 0, 0)
                }
            }
            return (dots, firstDot, secondDot)
        }
        guard dots == 2, firstDot >= 10, secondDot - firstDot > 2 else { return false }
        // A JOSE header is a JSON object naming its algorithm.
        guard let header = decodeSegment(value.utf8.prefix(firstDot)), header.first == UInt8(ascii: "{") else { return false }
        let alg = Array("\"alg\"".utf8)
        let bytes = Array(header)
        guard bytes.count >= alg.count else { return false }
        return (0...(bytes.count - alg.count)).contains { bytes[$0..<($0 + alg.count)].elementsEqual(alg) }
    }

    /// Decoded header and claims of a (possibly masked) JWT.
    public static func decode(_ value: String) -> (header: [String: Any], claims: [String: Any])? {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2,
              let h = decodeSegment(parts[0]), let c = decodeSegment(parts[1]),
              let header = try? JSONSerialization.jsonObject(with: h) as? [String: Any],
              let claims = try? JSONSerialization.jsonObject(with: c) as? [String: Any]
        else { return nil }
        return (header, claims)
    }

    public static func decodeSegment<S: StringProtocol>(_ segment: S) -> Data? {
        decodeSegment(segment.utf8)
    }

    public static func decodeSegment<C: Collection<UInt8>>(_ segment: C) -> Data? {
        var bytes = segment.map { c -> UInt8 in
            c == UInt8(ascii: "-") ? UInt8(ascii: "+") : c == UInt8(ascii: "_") ? UInt8(ascii: "/") : c
        }
        while bytes.count % 4 != 0 { bytes.append(UInt8(ascii: "=")) }
        return Data(base64Encoded: Data(bytes))
    }

    public static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        let standard = Data(bytes).base64EncodedString().utf8
        return String(decoding: standard.compactMap { c -> UInt8? in
            c == UInt8(ascii: "+") ? UInt8(ascii: "-") : c == UInt8(ascii: "/") ? UInt8(ascii: "_") : c == UInt8(ascii: "=") ? nil : c
        }, as: UTF8.self)
    }

    private static func isBase64URL(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
    }
}
