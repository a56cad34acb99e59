import AuthtapAnalyzer
import AuthtapModel
import Foundation

/// Reads HAR files as real tools write them (Chrome/Chromium, Firefox, Safari, Charles, Insomnia,
/// mitmproxy, Proxyman, authtap itself) into raw exchanges; the caller masks them exactly as on capture.
public enum HARImport {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public struct Result {
        public var exchanges: [Exchange]
        /// Entries that could not be read: their index (0-based) and why.
        public var skipped: [(index: Int, reason: String)]
        public var creator: String
    }

    /// Parses a whole file. A file that is not JSON or not HAR fails with its position; entries that
    /// are not usable are skipped and reported, the others imported.
    public static func parse(_ bytes: [UInt8], progress: ((Int, Int) -> Void)? = nil) -> Swift.Result<Result, Failure> {
        var b = bytes
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { b.removeFirst(3) }  // a UTF-8 BOM (some exporters write one)
        let json: JSONValue
        switch JSONValue.parse(b) {
        case .success(let v): json = v
        case .failure(let e):
            let (line, column) = position(b, e.offset)
            let what = e.endOfInput ? "truncated: the JSON ends early" : "not JSON: \(e.message)"
            return .failure(Failure(description: "\(what) at line \(line), column \(column) (byte \(e.offset))"))
        }
        guard case .object = json, let log = json["log"], case .object = log else {
            return .failure(Failure(description: "not a HAR file: the top level has no \"log\" object"))
        }
        guard case .array(let entries)? = log["entries"] else {
            return .failure(Failure(description: "not a HAR file: \"log\" has no \"entries\" array"))
        }
        let creator = [log["creator"]?["name"]?.string, log["creator"]?["version"]?.string].compactMap { $0 }.joined(
            separator: " ")
        var exchanges: [Exchange] = []
        var skipped: [(Int, String)] = []
        for (i, entry) in entries.enumerated() {
            progress?(i + 1, entries.count)
            switch exchange(entry, index: i) {
            case .success(let e): exchanges.append(e)
            case .failure(let f): skipped.append((i, f.description))
            }
        }
        return .success(Result(exchanges: exchanges, skipped: skipped, creator: creator.isEmpty ? "unknown" : creator))
    }

    static func position(_ b: [UInt8], _ offset: Int) -> (Int, Int) {
        var line = 1, column = 1
        for c in b.prefix(offset) {
            if c == 0x0A { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    static func exchange(_ entry: JSONValue, index: Int) -> Swift.Result<Exchange, Failure> {
        guard let request = entry["request"], case .object = request else {
            return .failure(Failure(description: "no request"))
        }
        guard let method = request["method"]?.string, !method.isEmpty else {
            return .failure(Failure(description: "no request.method"))
        }
        guard let urlText = request["url"]?.string, let url = URLComponents(string: urlText), let host = url.host,
            !host.isEmpty
        else {
            return .failure(Failure(description: "request.url is missing or not an absolute URL"))
        }
        let scheme: Scheme = url.scheme?.lowercased() == "http" ? .http : .https
        // The target as the file spells it: URLComponents would percent-encode a recorded marker's spaces and
        // brackets and encode escapes twice, and the record would no longer read as masked.
        var target =
            rawTarget(urlText)
            ?? {
                var t = url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath
                if let q = url.percentEncodedQuery { t += "?" + q }
                if let f = url.percentEncodedFragment { t += "#" + f }
                return t
            }()
        if target.first == "?" || target.first == "#" { target = "/" + target }
        let start = date(entry["startedDateTime"]?.string) ?? Date(timeIntervalSince1970: 0)
        let connection = entry["connection"]?.string.flatMap { UInt64($0) } ?? UInt64(index + 1)
        var e = Exchange(
            connectionID: connection, clientAddress: "har", scheme: scheme, host: host.lowercased(),
            port: url.port ?? (scheme == .https ? 443 : 80),
            method: method.uppercased(), target: target,
            httpVersion: request["httpVersion"]?.string.map(normalizeVersion) ?? "HTTP/1.1", start: start)
        readRequest(request, into: &e)
        if let response = entry["response"], case .object = response { readResponse(response, into: &e) }
        if let timings = entry["timings"], case .object = timings { readTimings(timings, into: &e) }
        readOutcome(entry, into: &e)
        return .success(e)
    }

    /// Headers (with `cookies` where the file lists them apart) and the body of `request`.
    static func readRequest(_ request: JSONValue, into e: inout Exchange) {
        e.requestHeaders = headers(request["headers"])
        if e.requestHeaders.value(of: "cookie") == nil, case .array(let cookies)? = request["cookies"], !cookies.isEmpty
        {
            let pairs = cookies.compactMap { c -> String? in
                c["name"]?.string.map { "\($0)=\(c["value"]?.string ?? "")" }
            }
            if !pairs.isEmpty { e.requestHeaders.append(HeaderField("Cookie", pairs.joined(separator: "; "))) }
        }
        if let post = request["postData"], case .object = post {
            var body: [UInt8]
            let base64 = post["encoding"]?.string == "base64" || post["_encoding"]?.string == "base64"
            if let text = post["text"]?.string {
                body = base64 ? Array(Data(base64Encoded: text) ?? Data(text.utf8)) : Array(text.utf8)
            } else if case .array(let params)? = post["params"] {
                body = Array(
                    params.compactMap { p -> String? in
                        p["name"]?.string.map { formEncode($0) + "=" + formEncode(p["value"]?.string ?? "") }
                    }.joined(separator: "&").utf8)
            } else {
                body = []
            }
            if e.requestHeaders.value(of: "content-type") == nil, let mime = post["mimeType"]?.string, !mime.isEmpty {
                e.requestHeaders.append(HeaderField("Content-Type", mime))
            }
            let declared = checkedInt(request["bodySize"]?.number) ?? -1
            e.requestBody = importedBody(
                body, base64: base64, wireSize: declared, decodedSize: nil, headers: e.requestHeaders)
        }
    }

    /// Status, headers (with `cookies` and `redirectURL` where the file lists them apart) and body of `response`.
    static func readResponse(_ response: JSONValue, into e: inout Exchange) {
        let status = checkedInt(response["status"]?.number) ?? 0
        e.status = status > 0 ? status : nil
        e.responseHeaders = headers(response["headers"])
        if e.responseHeaders.value(of: "set-cookie") == nil, case .array(let cookies)? = response["cookies"] {
            for c in cookies {
                if let name = c["name"]?.string {
                    e.responseHeaders.append(HeaderField("Set-Cookie", "\(name)=\(c["value"]?.string ?? "")"))
                }
            }
        }
        if e.responseHeaders.value(of: "location") == nil, let redirect = response["redirectURL"]?.string,
            !redirect.isEmpty
        {
            e.responseHeaders.append(HeaderField("Location", redirect))
        }
        if let content = response["content"], case .object = content {
            var body: [UInt8] = []
            let base64 = content["encoding"]?.string == "base64"
            if let text = content["text"]?.string {
                body = base64 ? Array(Data(base64Encoded: text) ?? Data()) : Array(text.utf8)
            }
            if e.responseHeaders.value(of: "content-type") == nil, let mime = content["mimeType"]?.string,
                !mime.isEmpty
            {
                e.responseHeaders.append(HeaderField("Content-Type", mime))
            }
            let decodedSize = checkedInt(content["size"]?.number)
            let wireSize =
                checkedInt(response["bodySize"]?.number).flatMap { $0 >= 0 ? $0 : nil }
                ?? checkedInt(content["compression"]?.number).flatMap { c in
                    decodedSize.flatMap { d in d.subtractingReportingOverflow(c).overflow ? nil : d - c }
                }
                ?? decodedSize ?? -1
            e.responseBody = importedBody(
                body, base64: base64, wireSize: wireSize, decodedSize: decodedSize, headers: e.responseHeaders)
        }
    }

    /// HAR's phase durations, summed into authtap's offsets from the request's start.
    static func readTimings(_ timings: JSONValue, into e: inout Exchange) {
        func t(_ k: String) -> Double? { timings[k]?.number.flatMap { $0 >= 0 ? $0 : nil } }
        let before = (t("blocked") ?? 0) + (t("dns") ?? 0)
        var cursor = before
        if let connect = t("connect") {
            let ssl = t("ssl") ?? 0
            e.timings.connect = cursor + connect - ssl
            if t("ssl") != nil { e.timings.tls = cursor + connect }
            cursor += connect
        }
        cursor += t("send") ?? 0
        e.timings.requestSent = cursor
        cursor += t("wait") ?? 0
        e.timings.firstByte = cursor
        cursor += t("receive") ?? 0
        e.timings.end = cursor
    }

    /// What authtap's own exports carry (`_authtap`: derived params, error, TLS failure) and a browser's failed
    /// entry (`_error`); an entry with no response is recorded as the client gone.
    static func readOutcome(_ entry: JSONValue, into e: inout Exchange) {
        if case .array(let derived)? = entry["_authtap"]?["derived"] {
            e.oauthParams = derived.compactMap { d in
                guard let name = d["name"]?.string, let value = d["value"]?.string else { return nil }
                return OAuthParam(location: .derived, name: name, value: value, fingerprint: d["fingerprint"]?.string)
            }
        }
        // authtap's own exports and browsers' failed entries.
        if let error = entry["_authtap"]?["error"]?.string { e.error = ErrorKind(rawValue: error) }
        if let reason = entry["_authtap"]?["tlsFailure"]?.string { e.tlsFailure = TLSFailureReason(rawValue: reason) }
        if let detail = entry["_error"]?.string ?? entry["response"]?["_error"]?.string, !detail.isEmpty {
            e.errorDetail = detail
            if e.error == nil, e.status == nil { e.error = .connectFailed }
        }
        if e.status == nil, e.error == nil {
            e.error = .clientGone; e.errorDetail = e.errorDetail ?? "the HAR entry has no response"
        }
    }

    static func headers(_ v: JSONValue?) -> [HeaderField] {
        guard case .array(let list)? = v else { return [] }
        return list.compactMap { h in
            guard let name = h["name"]?.string, !name.hasPrefix(":") else { return nil }  // HTTP/2 pseudo-headers
            return HeaderField(name, h["value"]?.string ?? "")
        }
    }

    static func normalizeVersion(_ v: String) -> String {
        // Chrome writes http/2.0 and h3, Firefox HTTP/2, Charles HTTP/2.0: one spelling each, as authtap records.
        let u = v.uppercased()
        if u == "H2" || u == "HTTP/2.0" { return "HTTP/2" }
        if u == "H3" || u == "HTTP/3.0" { return "HTTP/3" }
        if u.hasPrefix("HTTP/") { return u }
        return u.isEmpty ? "HTTP/1.1" : u
    }

    static func formEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func date(_ s: String?) -> Date? {
        s.flatMap(HARDate.date)
    }

    /// A HAR number as an Int, or `nil` when it is not a whole number that fits (`1e300`, `NaN`).
    static func checkedInt(_ value: Double?) -> Int? {
        guard let value, value.isFinite else { return nil }
        return Int(exactly: value.rounded(.towardZero))
    }

    /// A HAR body. HAR 1.2 keeps decoded text, so a body under a Content-Encoding header is marked as
    /// decoded already; some exporters keep the compressed bytes in base64 instead, and those are left
    /// for recording to decode (they are not UTF-8 text).
    static func importedBody(
        _ bytes: [UInt8], base64: Bool, wireSize: Int, decodedSize: Int?, headers: [HeaderField]
    ) -> CapturedBody {
        let size = max(wireSize, 0)
        var body = CapturedBody(bytes: bytes, size: max(size, bytes.count))
        // HAR text is Unicode already, whatever charset the headers name; base64 content is raw bytes.
        body.decoded = !base64
        let coding = headers.value(of: "content-encoding").flatMap { $0.lowercased() == "identity" ? nil : $0 }
        guard let coding, !bytes.isEmpty else { return body }
        if base64 && String(validating: bytes, as: UTF8.self) == nil {
            body.truncated = false
            return body
        }
        body.decoded = true
        body.encoding = coding
        body.size = size > 0 ? size : bytes.count
        body.decodedSize = decodedSize.flatMap { $0 >= 0 ? $0 : nil } ?? bytes.count
        body.truncated = bytes.count < (body.decodedSize ?? 0)
        return body
    }

    /// Path, query and fragment of an absolute URL, exactly as written; `nil` without `scheme://authority`.
    static func rawTarget(_ url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        guard let start = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) else { return "/" }
        return String(rest[start...])
    }
}
