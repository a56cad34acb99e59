import Foundation

/// One name/value header line, kept in wire order.
public struct HeaderField: Codable, Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The first `limit` bytes of a body, with its full size.
///
/// The proxy fills it with the bytes as they crossed the wire. Recording decodes them (Content-Encoding,
/// Transfer-Encoding, charset) and masks them: a recorded body holds UTF-8 text only, and says what it was.
public struct CapturedBody: Codable, Sendable, Equatable {
    /// Captured prefix (raw before recording; decoded, masked UTF-8 text once recorded).
    public var bytes: [UInt8]
    /// Total size of the body as it crossed the proxy (the encoded size when `encoding` is set).
    public var size: Int
    /// `true` when `bytes` holds less than the whole body: cut at the body limit, or the stream ended early.
    public var truncated: Bool
    /// The codings the body had on the wire and recording undid, as the headers list them (`gzip`, `gzip, br`);
    /// `nil` for an identity body.
    public var encoding: String?
    /// The decoded size, when the whole body was decoded.
    public var decodedSize: Int?
    /// Why `bytes` is empty or not what crossed the wire, e.g. `body not decoded: corrupt gzip stream`
    /// or `converted from windows-1252`.
    public var note: String?
    /// `bytes` is UTF-8 text already (recorded, or a HAR's `text`): recording must not decode it again,
    /// whatever the headers say about codings and charsets.
    public var decoded: Bool

    public init(bytes: [UInt8] = [], size: Int = 0) {
        self.bytes = bytes
        self.size = size
        self.truncated = bytes.count < size
        self.encoding = nil
        self.decodedSize = nil
        self.note = nil
        self.decoded = false
    }

    public init(
        bytes: [UInt8], size: Int, truncated: Bool, encoding: String?, decodedSize: Int?, note: String?,
        decoded: Bool = true
    ) {
        self.bytes = bytes
        self.size = size
        self.truncated = truncated
        self.encoding = encoding
        self.decodedSize = decodedSize
        self.note = note
        self.decoded = decoded
    }
    public static let empty = CapturedBody()

    /// Adds a note after any the body has (a proxy's note survives the masker's).
    public mutating func addNote(_ text: String) {
        note = note.map { "\($0); \(text)" } ?? text
    }
}

/// Milliseconds from the start of an exchange to each of its phases.
/// `nil` means the phase did not happen (for instance `connect` on a reused connection).
public struct Timings: Codable, Sendable, Equatable {
    public var start: Date
    public var connect: Double?
    public var tls: Double?
    public var requestSent: Double?
    public var firstByte: Double?
    public var end: Double?
    public init(
        start: Date, connect: Double? = nil, tls: Double? = nil, requestSent: Double? = nil, firstByte: Double? = nil,
        end: Double? = nil
    ) {
        self.start = start
        self.connect = connect
        self.tls = tls
        self.requestSent = requestSent
        self.firstByte = firstByte
        self.end = end
    }
}

/// What a certificate says, reduced to what a person diagnosing TLS needs.
public struct CertificateSummary: Codable, Sendable, Hashable {
    public var subject: String
    public var issuer: String
    public var sans: [String]
    public var notBefore: Date
    public var notAfter: Date
    public var serial: String
    public init(subject: String, issuer: String, sans: [String], notBefore: Date, notAfter: Date, serial: String) {
        self.subject = subject
        self.issuer = issuer
        self.sans = sans
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.serial = serial
    }
}

/// TLS facts for one leg (client↔authtap or authtap↔upstream).
public struct TLSFacts: Codable, Sendable, Hashable {
    public var version: String?
    public var cipher: String?
    public var alpn: String?
    public var sni: String?
    /// Upstream leg only: the certificate the server presented.
    public var peerCertificate: CertificateSummary?
    /// Upstream leg only: `verified`, `insecure` (verification off) or `failed`.
    public var verification: String?
    public init(
        version: String? = nil, cipher: String? = nil, alpn: String? = nil, sni: String? = nil,
        peerCertificate: CertificateSummary? = nil, verification: String? = nil
    ) {
        self.version = version
        self.cipher = cipher
        self.alpn = alpn
        self.sni = sni
        self.peerCertificate = peerCertificate
        self.verification = verification
    }
}

public enum Scheme: String, Codable, Sendable {
    case http, https
}

/// A failure the proxy observed, stored as data. Raw values appear in `X-Authtap-Error`.
public enum ErrorKind: String, Codable, Sendable, CaseIterable {
    case dnsFailure = "dns-failure"
    case connectionRefused = "connection-refused"
    case connectTimeout = "connect-timeout"
    case connectFailed = "connect-failed"
    case upstreamTLS = "upstream-tls"
    case clientTLS = "client-tls"
    case upstreamReset = "upstream-reset"
    case upstreamClosed = "upstream-closed"
    case upstreamMalformed = "upstream-malformed"
    case clientGone = "client-gone"
    case malformedRequest = "malformed-request"
    case headersTooLarge = "headers-too-large"
    case badConnectTarget = "bad-connect-target"
    case nonTLSInTunnel = "non-tls-in-tunnel"
    case nonHTTPInTunnel = "non-http-in-tunnel"
    case proxyAuthRequired = "proxy-auth-required"
    case forbiddenTarget = "forbidden-target"
    /// HTTP/2: the upstream ended one stream with RST_STREAM.
    case upstreamStreamReset = "upstream-stream-reset"
    /// HTTP/2: the upstream sent GOAWAY before answering the stream.
    case upstreamGoAway = "upstream-goaway"
    /// HTTP/2: a protocol, flow-control or SETTINGS error on the upstream connection.
    case upstreamHTTP2 = "upstream-http2"
    /// HTTP/2: the client broke the protocol (authtap answered with GOAWAY or RST_STREAM).
    case clientHTTP2 = "client-http2"

    /// The one-sentence text sent to the client in a 502/400 body.
    public var sentence: String {
        switch self {
        case .dnsFailure: return "authtap could not resolve the upstream host name."
        case .connectionRefused: return "The upstream server refused the connection."
        case .connectTimeout: return "Connecting to the upstream server timed out."
        case .connectFailed: return "authtap could not connect to the upstream server."
        case .upstreamTLS: return "The TLS handshake with the upstream server failed."
        case .clientTLS: return "The client rejected authtap's TLS certificate."
        case .upstreamReset: return "The upstream server reset the connection."
        case .upstreamClosed: return "The upstream server closed the connection before a complete response."
        case .upstreamMalformed: return "The upstream server sent a response that is not valid HTTP/1.1."
        case .clientGone: return "The client went away before the exchange finished."
        case .malformedRequest: return "The request is not valid HTTP/1.1."
        case .headersTooLarge: return "The request headers exceed authtap's 64 KiB limit."
        case .badConnectTarget: return "The CONNECT target is not a valid host:port."
        case .nonTLSInTunnel: return "The client sent bytes that are not TLS inside an intercepted tunnel."
        case .nonHTTPInTunnel: return "The client sent bytes that are not HTTP inside an intercepted tunnel."
        case .proxyAuthRequired: return "authtap requires proxy authentication."
        case .forbiddenTarget: return "authtap does not forward requests to itself."
        case .upstreamStreamReset: return "The upstream server reset the HTTP/2 stream."
        case .upstreamGoAway: return "The upstream server sent GOAWAY before answering the HTTP/2 stream."
        case .upstreamHTTP2: return "The upstream server broke the HTTP/2 protocol."
        case .clientHTTP2: return "The client broke the HTTP/2 protocol."
        }
    }
}

/// Why a TLS handshake failed, from structured signals (verification facts, BoringSSL reason codes, alert bytes).
public enum TLSFailureReason: String, Codable, Sendable, CaseIterable {
    case untrustedIssuer = "untrusted-issuer"
    case expired
    case notYetValid = "not-yet-valid"
    case hostnameMismatch = "hostname-mismatch"
    case protocolVersion = "protocol-version"
    case handshakeAlert = "handshake-alert"
    case closedDuringHandshake = "closed-during-handshake"
    /// The peer opened the connection but did not finish the handshake within `--tls-handshake-timeout`.
    case handshakeTimeout = "handshake-timeout"
    case other
}

/// The OAuth / OIDC role an exchange plays. One exchange can play several
/// (an /authorize request answered by a redirect carrying `code`).
public enum OAuthRole: String, Codable, Sendable, CaseIterable {
    case authorizationRequest = "authorization-request"
    case authorizationResponse = "authorization-response"
    case callback
    case token
    case userinfo
    case introspection
    case revocation
    case discovery
    case jwks
    case deviceAuthorization = "device-authorization"
    case pushedAuthorizationRequest = "par"
    /// A step of a sign-in at the authorization server (login form, consent, MFA) tied to its authorization request.
    case signInStep = "sign-in-step"
}

/// One OAuth parameter extracted from an exchange; secrets hold their masked marker and fingerprint.
public struct OAuthParam: Codable, Sendable, Equatable {
    /// Where it was found; stored and printed as its dotted path (`request.body`, `response.location.query`).
    public var location: ParamLocation
    public var name: String
    /// Readable value, or the masked marker for secrets.
    public var value: String
    /// Keyed fingerprint for secrets, `nil` for readable values.
    public var fingerprint: String?
    public init(location: ParamLocation, name: String, value: String, fingerprint: String? = nil) {
        self.location = location
        self.name = name
        self.value = value
        self.fingerprint = fingerprint
    }

    /// A secret's short marker and its fingerprint.
    public typealias Secret = (marker: String, fingerprint: String)

    public init(location: ParamLocation, name: String, secret: Secret) {
        self.init(location: location, name: name, value: secret.marker, fingerprint: secret.fingerprint)
    }
}

/// One HTTP exchange (or a failed attempt at one) as seen by the proxy.
public struct Exchange: Codable, Sendable, Equatable {
    public var id: Int64?
    public var sessionID: Int64?
    /// Groups exchanges sent on the same client connection / tunnel.
    public var connectionID: UInt64
    public var clientAddress: String
    public var scheme: Scheme
    public var host: String
    public var port: Int
    public var method: String
    /// Path and query (origin form), masked once recorded.
    public var target: String
    public var httpVersion: String
    public var status: Int?
    public var requestHeaders: [HeaderField]
    public var responseHeaders: [HeaderField]
    public var requestBody: CapturedBody
    public var responseBody: CapturedBody
    public var clientTLS: TLSFacts?
    public var upstreamTLS: TLSFacts?
    public var insecureUpstream: Bool
    public var connectionReused: Bool
    public var timings: Timings
    public var error: ErrorKind?
    public var tlsFailure: TLSFailureReason?
    public var errorDetail: String?
    public var roles: [OAuthRole]
    public var oauthParams: [OAuthParam]

    public init(
        connectionID: UInt64, clientAddress: String, scheme: Scheme, host: String, port: Int,
        method: String, target: String, httpVersion: String = "HTTP/1.1", start: Date
    ) {
        self.id = nil
        self.sessionID = nil
        self.connectionID = connectionID
        self.clientAddress = clientAddress
        self.scheme = scheme
        self.host = host
        self.port = port
        self.method = method
        self.target = target
        self.httpVersion = httpVersion
        self.status = nil
        self.requestHeaders = []
        self.responseHeaders = []
        self.requestBody = .empty
        self.responseBody = .empty
        self.clientTLS = nil
        self.upstreamTLS = nil
        self.insecureUpstream = false
        self.connectionReused = false
        self.timings = Timings(start: start)
        self.error = nil
        self.tlsFailure = nil
        self.errorDetail = nil
        self.roles = []
        self.oauthParams = []
    }

    /// `scheme://host[:port]target`, with the default port left out.
    public var url: String {
        let defaultPort = (scheme == .https && port == 443) || (scheme == .http && port == 80)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(hostPart)\(defaultPort ? "" : ":\(port)")\(target)"
    }
}

/// A CONNECT tunnel, intercepted or relayed byte for byte.
public struct Tunnel: Codable, Sendable, Equatable {
    public var id: Int64?
    public var sessionID: Int64?
    public var connectionID: UInt64
    public var clientAddress: String
    public var host: String
    public var port: Int
    public var intercepted: Bool
    public var start: Date
    public var durationMs: Double
    public var bytesFromClient: Int
    public var bytesFromUpstream: Int
    /// How it ended: `client-closed`, `upstream-closed`, `upstream-reset`, `client-reset`, `error`, `shutdown`.
    public var ending: String
    public var error: ErrorKind?
    public var errorDetail: String?
    public init(connectionID: UInt64, clientAddress: String, host: String, port: Int, intercepted: Bool, start: Date) {
        self.id = nil
        self.sessionID = nil
        self.connectionID = connectionID
        self.clientAddress = clientAddress
        self.host = host
        self.port = port
        self.intercepted = intercepted
        self.start = start
        self.durationMs = 0
        self.bytesFromClient = 0
        self.bytesFromUpstream = 0
        self.ending = "open"
        self.error = nil
        self.errorDetail = nil
    }
}
