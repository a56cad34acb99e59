import Foundation

/// Decoding of JWS compact tokens: header and claims only, never a signature check here.
public enum JWT {
    /// Three base64url segments whose first decodes to a JSON object with `alg`.
    public static func looksLikeJWT(_ value: String) -> Bool {
        // Cheap byte checks first: this runs for every secret value on the writer's path.
        // The header decodes to a JSON object, so its first byte is `{` (0x7B), whose top six bits
        // are base64url `e`: anything else is not a JWT, without scanning it.
        guard value.utf8.first == UInt8(ascii: "e") else { return false }
        var text = value
        let (dots, firstDot, secondDot) = text.withUTF8 { b in
            compactBytes.withUnsafeBufferPointer { table -> (Int, Int, Int) in
                guard let base = b.baseAddress else { return (0, 0, 0) }
                // Every byte must be base64url or a dot. Checked without a branch per byte (a token is
                // hundreds of bytes); the dots are then found with memchr.
                var invalid: UInt8 = 0
                for i in 0..<b.count { invalid |= table[Int(b[i])] }
                guard invalid == 0 else { return (0, 0, 0) }
                var dots = 0, firstDot = -1, secondDot = -1
                var from = 0
                while from < b.count, let hit = memchr(base + from, Int32(UInt8(ascii: ".")), b.count - from) {
                    let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    dots += 1
                    if dots == 1 { firstDot = at } else if dots == 2 { secondDot = at } else { return (3, 0, 0) }
                    from = at + 1
                }
                return (dots, firstDot, secondDot)
            }
        }
        guard dots == 2, firstDot >= 10, secondDot - firstDot > 2 else { return false }
        // A JOSE header is a JSON object naming its algorithm.
        return text.withUTF8 { b -> Bool in
            guard let header = base64URLDecoded(UnsafeBufferPointer(rebasing: b[..<firstDot])),
                header.first == UInt8(ascii: "{"), header.count >= 5
            else { return false }
            for i in 0...(header.count - 5) where header[i] == UInt8(ascii: "\"") {
                if header[i + 1] == UInt8(ascii: "a"), header[i + 2] == UInt8(ascii: "l"),
                    header[i + 3] == UInt8(ascii: "g"),
                    header[i + 4] == UInt8(ascii: "\"")
                {
                    return true
                }
            }
            return false
        }
    }

    /// Unpadded base64url (RFC 7515 §2) to bytes; `nil` for a character outside the alphabet or an
    /// impossible length. Byte work only: it runs for every secret on the writer's path.
    static func base64URLDecoded(_ b: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        base64Decoded(b, alphabet: urlValues)
    }

    /// Standard base64 (RFC 4648 §4), `=` padding optional: an HTTP Basic credential.
    static func base64StandardDecoded(_ b: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var count = b.count
        if count % 4 == 0 {
            if count >= 1, b[count - 1] == UInt8(ascii: "=") { count -= 1 }
            if count >= 1, b[count - 1] == UInt8(ascii: "=") { count -= 1 }
        }
        return base64Decoded(UnsafeBufferPointer(rebasing: b[..<count]), alphabet: standardValues)
    }

    private static func base64Decoded(_ b: UnsafeBufferPointer<UInt8>, alphabet: [UInt8]) -> [UInt8]? {
        if b.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(b.count * 3 / 4 + 2)
        var acc: UInt32 = 0
        var bits: UInt32 = 0
        return alphabet.withUnsafeBufferPointer { values -> [UInt8]? in
            for c in b {
                let v = values[Int(c)]
                if v == 0xFF { return nil }
                acc = acc << 6 | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out.append(UInt8(truncatingIfNeeded: acc >> bits))
                }
            }
            return out
        }
    }

    /// Sextet values by byte, 0xFF where the byte is not in the alphabet.
    private static func values(_ last2: String) -> [UInt8] {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in Array(("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + last2).utf8)
            .enumerated()
        {
            table[Int(c)] = UInt8(i)
        }
        return table
    }
    private static let urlValues = values("-_")
    /// 0 for the bytes of a JWS compact string (base64url and `.`), 1 for any other.
    private static let compactBytes: [UInt8] = urlValues.enumerated().map { c, v in
        v == 0xFF && c != Int(UInt8(ascii: ".")) ? 1 : 0
    }
    private static let standardValues = values("+/")
    /// Both alphabets: what `decodeSegment` accepts.
    private static let lenientValues: [UInt8] = {
        var table = urlValues
        table[Int(UInt8(ascii: "+"))] = 62
        table[Int(UInt8(ascii: "/"))] = 63
        return table
    }()

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

    /// A base64url segment (tolerating the standard alphabet's `+` `/` and trailing `=` padding).
    public static func decodeSegment<C: Collection<UInt8>>(_ segment: C) -> Data? {
        var bytes = Array(segment)
        while bytes.last == UInt8(ascii: "=") { bytes.removeLast() }
        return bytes.withUnsafeBufferPointer { base64Decoded($0, alphabet: lenientValues) }.map { Data($0) }
    }

    /// Unpadded base64url (RFC 4648 §5) of bytes.
    public static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((input.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= input.count {
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out.append(urlAlphabet[Int(n >> 18)]); out.append(urlAlphabet[Int(n >> 12 & 63)])
            out.append(urlAlphabet[Int(n >> 6 & 63)]); out.append(urlAlphabet[Int(n & 63)])
            i += 3
        }
        switch input.count - i {
        case 1:
            let n = UInt32(input[i]) << 16
            out.append(urlAlphabet[Int(n >> 18)]); out.append(urlAlphabet[Int(n >> 12 & 63)])
        case 2:
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
            out.append(urlAlphabet[Int(n >> 18)]); out.append(urlAlphabet[Int(n >> 12 & 63)])
            out.append(urlAlphabet[Int(n >> 6 & 63)])
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }
    private static let urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

}
