import Foundation

/// Decoding of JWS compact tokens: header and claims only, never a signature check here.
public enum JWT {
    /// Three base64url segments whose first decodes to a JSON object with `alg`.
    public static func looksLikeJWT(_ value: String) -> Bool {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count >= 10, parts[1].count >= 2 else { return false }
        for part in parts where !part.utf8.allSatisfy(isBase64URL) { return false }
        guard let header = decodeSegment(parts[0]),
              let object = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
        else { return false }
        return object["alg"] != nil
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
        var text = segment.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text)
    }

    public static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func isBase64URL(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
    }
}
