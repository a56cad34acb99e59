import NIOHTTP1

/// How a request's body is delimited, decided once from the head the client sent, and the one framing header
/// authtap forwards for it. Request smuggling lives in the gap between two parsers' ideas of where a body ends
/// (RFC 9112 §6.1, §6.3, §11.2); a proxy closes the gap by refusing every head whose framing is ambiguous and
/// by sending upstream exactly the framing it used itself, never the client's spelling of it.
struct RequestFraming {
    enum Body: Equatable {
        case none
        case contentLength(Int)
        case chunked
    }

    enum Violation: Error, Equatable {
        /// `Connection: content-length` (or transfer-encoding, host) would have the field dropped as
        /// hop-by-hop, and the body sent upstream unframed, where it reads as a second request.
        case connectionNamesFramingField(String)
        /// CL.TE and TE.CL: RFC 9112 §6.1 lets a server reject both together, and a proxy must.
        case contentLengthAndTransferEncoding
        /// More than one Content-Length value that differ (RFC 9112 §6.3 rule 5).
        case conflictingContentLength
        case invalidContentLength
        /// Anything but a single `chunked`: `xchunked`, `chunked, identity`, repeated fields (TE.TE).
        case unsupportedTransferEncoding
        /// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
        case transferEncodingInHTTP10
        /// TRACE and CONNECT carry no content; upstream would read one as the next request.
        case bodyNotAllowed(String)

        var detail: String {
            switch self {
            case .connectionNamesFramingField(let name):
                return "the Connection header names \(name), a field that frames or routes the request"
            case .contentLengthAndTransferEncoding: return "the request has both Content-Length and Transfer-Encoding"
            case .conflictingContentLength: return "the request has differing Content-Length values"
            case .invalidContentLength: return "the request's Content-Length is not a decimal number"
            case .unsupportedTransferEncoding:
                return "the request's Transfer-Encoding is not one field with the single coding chunked"
            case .transferEncodingInHTTP10: return "an HTTP/1.0 request has Transfer-Encoding"
            case .bodyNotAllowed(let method): return "a \(method) request has a body"
            }
        }
    }

    /// Fields whose naming in Connection is refused: dropping them changes where the body ends or
    /// which host the request is for.
    static let protectedFields: Set<String> = ["content-length", "transfer-encoding", "host"]

    /// The framing of a request head as the client sent it, or why it is refused.
    static func check(method: HTTPMethod, version: HTTPVersion, headers: HTTPHeaders) -> Result<Body, Violation> {
        var lengths: [Int] = []
        var transferEncodings: [Substring] = []
        var lengthFields = 0
        for (name, value) in headers {
            switch name.utf8.count {
            case 10 where HopByHop.sameName(name, lowercased: "connection"):
                for token in value.split(separator: ",") {
                    let lower = token.trimmingSpaces.lowercased()
                    if protectedFields.contains(lower) { return .failure(.connectionNamesFramingField(lower)) }
                }
            case 14 where HopByHop.sameName(name, lowercased: "content-length"):
                lengthFields += 1
                // `42, 42` is one length said twice (RFC 9110 §8.6); anything else in the list is not a length.
                for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let n = parseLength(item.trimmingSpaces) else { return .failure(.invalidContentLength) }
                    lengths.append(n)
                }
            case 17 where HopByHop.sameName(name, lowercased: "transfer-encoding"):
                transferEncodings.append(Substring(value))
            default:
                break
            }
        }
        let body: Body
        if !transferEncodings.isEmpty {
            if lengthFields > 0 { return .failure(.contentLengthAndTransferEncoding) }
            if version.major == 1 && version.minor == 0 { return .failure(.transferEncodingInHTTP10) }
            guard transferEncodings.count == 1,
                transferEncodings[0].trimmingSpaces.lowercased() == "chunked"
            else { return .failure(.unsupportedTransferEncoding) }
            body = .chunked
        } else if let first = lengths.first {
            if lengths.contains(where: { $0 != first }) { return .failure(.conflictingContentLength) }
            body = .contentLength(first)
        } else {
            body = .none
        }
        if method == .TRACE || method == .CONNECT {
            switch body {
            case .none, .contentLength(0): break
            default: return .failure(.bodyNotAllowed(method.rawValue))
            }
        }
        return .success(body)
    }

    /// 1*DIGIT, at most 18 digits (no Int overflow); `nil` otherwise (signs, spaces inside, hex, empty).
    static func parseLength(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 18 else { return nil }
        var n = 0
        for c in text.utf8 {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(c - UInt8(ascii: "0"))
        }
        return n
    }

    /// `headers` (already end-to-end) with exactly the framing authtap will use: one canonical
    /// Content-Length or `Transfer-Encoding: chunked`, and `Content-Length: 0` for a bodiless POST, PUT or PATCH
    /// (which NIO's encoder would otherwise send chunked). Unchanged, with no copy, when already canonical.
    static func forwarded(_ headers: HTTPHeaders, body: Body, method: HTTPMethod) -> HTTPHeaders {
        let wanted: (name: String, value: String)?
        switch body {
        case .contentLength(let n): wanted = ("Content-Length", String(n))
        case .chunked: wanted = ("Transfer-Encoding", "chunked")
        case .none: wanted = method == .POST || method == .PUT || method == .PATCH ? ("Content-Length", "0") : nil
        }
        var framingFields: [(name: String, value: String)] = []
        for (name, value) in headers where isFramingField(name) { framingFields.append((name, value)) }
        if let wanted, framingFields.count == 1,
            HopByHop.sameName(framingFields[0].name, lowercased: wanted.name.lowercased()),
            framingFields[0].value == wanted.value
        {
            return headers
        }
        if wanted == nil && framingFields.isEmpty { return headers }
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + 1)
        for (name, value) in headers where !isFramingField(name) { out.add(name: name, value: value) }
        if let wanted { out.add(name: wanted.name, value: wanted.value) }
        return out
    }

    private static func isFramingField(_ name: String) -> Bool {
        (name.utf8.count == 14 && HopByHop.sameName(name, lowercased: "content-length"))
            || (name.utf8.count == 17 && HopByHop.sameName(name, lowercased: "transfer-encoding"))
    }
}
