import AuthtapModel
import Foundation

struct ExchangeDump: Encodable {
    var exchanges: [ExchangeView]
    var tunnels: [Tunnel]
}

/// The JSON shape of `authtap exchanges --format json`: the record, with bodies as text when they are UTF-8.
struct ExchangeView: Encodable {
    var exchange: Exchange
    init(_ e: Exchange) { exchange = e }

    enum Keys: String, CodingKey {
        case id, session, connection, client, url, scheme, host, port, method, target, httpVersion, status
        case requestHeaders, responseHeaders, requestBody, requestBodySize, requestBodyTruncated
        case requestBodyEncoding, requestBodyDecodedSize, requestBodyNote
        case responseBody, responseBodySize, responseBodyTruncated, clientTLS, upstreamTLS, insecureUpstream
        case connectionReused, timings, error, tlsFailure, errorDetail, roles, oauthParams
        case responseBodyEncoding, responseBodyDecodedSize, responseBodyNote
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        let e = exchange
        try c.encode(e.id, forKey: .id)
        try c.encode(e.sessionID, forKey: .session)
        try c.encode(e.connectionID, forKey: .connection)
        try c.encode(e.clientAddress, forKey: .client)
        try c.encode(e.url, forKey: .url)
        try c.encode(e.scheme, forKey: .scheme)
        try c.encode(e.host, forKey: .host)
        try c.encode(e.port, forKey: .port)
        try c.encode(e.method, forKey: .method)
        try c.encode(e.target, forKey: .target)
        try c.encode(e.httpVersion, forKey: .httpVersion)
        try c.encode(e.status, forKey: .status)
        try c.encode(e.requestHeaders.map { [$0.name, $0.value] }, forKey: .requestHeaders)
        try c.encode(e.responseHeaders.map { [$0.name, $0.value] }, forKey: .responseHeaders)
        try c.encode(Self.text(e.requestBody.bytes), forKey: .requestBody)
        try c.encode(e.requestBody.size, forKey: .requestBodySize)
        try c.encode(e.requestBody.truncated, forKey: .requestBodyTruncated)
        try c.encodeIfPresent(e.requestBody.encoding, forKey: .requestBodyEncoding)
        try c.encodeIfPresent(e.requestBody.decodedSize, forKey: .requestBodyDecodedSize)
        try c.encodeIfPresent(e.requestBody.note, forKey: .requestBodyNote)
        try c.encode(Self.text(e.responseBody.bytes), forKey: .responseBody)
        try c.encode(e.responseBody.size, forKey: .responseBodySize)
        try c.encode(e.responseBody.truncated, forKey: .responseBodyTruncated)
        try c.encodeIfPresent(e.responseBody.encoding, forKey: .responseBodyEncoding)
        try c.encodeIfPresent(e.responseBody.decodedSize, forKey: .responseBodyDecodedSize)
        try c.encodeIfPresent(e.responseBody.note, forKey: .responseBodyNote)
        try c.encode(e.clientTLS, forKey: .clientTLS)
        try c.encode(e.upstreamTLS, forKey: .upstreamTLS)
        try c.encode(e.insecureUpstream, forKey: .insecureUpstream)
        try c.encode(e.connectionReused, forKey: .connectionReused)
        try c.encode(e.timings, forKey: .timings)
        try c.encode(e.error, forKey: .error)
        try c.encode(e.tlsFailure, forKey: .tlsFailure)
        try c.encode(e.errorDetail, forKey: .errorDetail)
        try c.encode(e.roles, forKey: .roles)
        try c.encode(e.oauthParams, forKey: .oauthParams)
    }

    static func text(_ bytes: [UInt8]) -> String? {
        if bytes.isEmpty { return nil }
        return String(validating: bytes, as: UTF8.self) ?? "base64:" + Data(bytes).base64EncodedString()
    }
}

/// One line per exchange: time, method, URL (masked), status, duration, OAuth role, error kind.
enum ConsoleLine {
    static func format(_ e: Exchange) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        formatter.timeZone = TimeZone.current
        // Method, host and URL are the client's and the server's words: escaped for the terminal.
        let target = TerminalText.escape(e.method == "CONNECT" ? "\(e.host):\(e.port)" : e.url)
        var line = "\(formatter.string(from: e.timings.start)) \(TerminalText.escape(e.method)) \(target)"
        line += " " + (e.status.map(String.init) ?? "---")
        line += " " + (e.timings.end.map { String(format: "%.1fms", $0) } ?? "-")
        if !e.roles.isEmpty { line += " [" + e.roles.map(\.rawValue).joined(separator: ",") + "]" }
        if let error = e.error { line += " !" + error.rawValue + (e.tlsFailure.map { "(\($0.rawValue))" } ?? "") }
        return line
    }
}

/// One line per CONNECT tunnel in `authtap exchanges --tunnels`.
enum TunnelLine {
    static func format(_ t: Tunnel) -> String {
        "tunnel #\(t.id ?? 0) \(t.intercepted ? "intercepted" : "relayed") \(TerminalText.escape(t.host)):\(t.port) "
            + "↑\(t.bytesFromClient)B ↓\(t.bytesFromUpstream)B \(String(format: "%.0f", t.durationMs))ms "
            + "\(TerminalText.escape(t.ending))\(t.error.map { " " + $0.rawValue } ?? "")"
    }
}
