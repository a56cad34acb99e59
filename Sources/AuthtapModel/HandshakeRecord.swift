import Foundation

/// How one TLS handshake attempt ended, as seen in packets.
public struct HandshakeRecord: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        case completed
        case synUnanswered = "syn-unanswered"
        case refused
        case resetDuringHandshake = "reset-during-handshake"
        case closedDuringHandshake = "closed-during-handshake"
        case alert
        case noServerHello = "no-server-hello"
        case versionMismatch = "version-mismatch"
        case clientHelloRetransmitted = "clienthello-retransmitted"
    }

    public var client: String
    public var clientPort: Int
    public var server: String
    public var serverPort: Int
    public var outcome: Outcome
    /// Who sent the alert, the RST or the FIN: `client` or `server`.
    public var side: String?
    public var alert: String?
    public var encryptedAlert: Bool
    public var sni: String?
    public var alpnOffered: [String]
    public var versionsOffered: [String]
    public var cipherSuitesOffered: Int
    public var serverVersion: String?
    public var cipher: String?
    public var alpn: String?
    public var helloRetryRequest: Bool
    public var certificateSubject: String?
    public var certificateIssuer: String?
    public var certificateSANs: [String]
    public var certificateNotBefore: Date?
    public var certificateNotAfter: Date?
    /// Microseconds since the epoch.
    public var startMicros: Int64
    public var endMicros: Int64
    /// ClientHello to completion, for completed handshakes.
    public var durationMs: Double?
    /// 1-based packet numbers, as Wireshark shows them.
    public var firstPacket: Int
    public var lastPacket: Int
    public var clientHelloRetransmits: Int
    public var detail: String

    public init(
        client: String,
        clientPort: Int,
        server: String,
        serverPort: Int,
        outcome: Outcome,
        side: String?,
        alert: String?,
        encryptedAlert: Bool,
        sni: String?,
        alpnOffered: [String],
        versionsOffered: [String],
        cipherSuitesOffered: Int,
        serverVersion: String?,
        cipher: String?,
        alpn: String?,
        helloRetryRequest: Bool,
        certificateSubject: String?,
        certificateIssuer: String?,
        certificateSANs: [String],
        certificateNotBefore: Date?,
        certificateNotAfter: Date?,
        startMicros: Int64,
        endMicros: Int64,
        durationMs: Double?,
        firstPacket: Int,
        lastPacket: Int,
        clientHelloRetransmits: Int,
        detail: String
    ) {
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.serverPort = serverPort
        self.outcome = outcome
        self.side = side
        self.alert = alert
        self.encryptedAlert = encryptedAlert
        self.sni = sni
        self.alpnOffered = alpnOffered
        self.versionsOffered = versionsOffered
        self.cipherSuitesOffered = cipherSuitesOffered
        self.serverVersion = serverVersion
        self.cipher = cipher
        self.alpn = alpn
        self.helloRetryRequest = helloRetryRequest
        self.certificateSubject = certificateSubject
        self.certificateIssuer = certificateIssuer
        self.certificateSANs = certificateSANs
        self.certificateNotBefore = certificateNotBefore
        self.certificateNotAfter = certificateNotAfter
        self.startMicros = startMicros
        self.endMicros = endMicros
        self.durationMs = durationMs
        self.firstPacket = firstPacket
        self.lastPacket = lastPacket
        self.clientHelloRetransmits = clientHelloRetransmits
        self.detail = detail
    }

    public var summary: String {
        var s = "\(client):\(clientPort) → \(server):\(serverPort) \(outcome.rawValue)"
        if let side { s += " (\(side))" }
        if let alert { s += " \(alert)" }
        if let sni { s += " sni=\(sni)" }
        return s
    }
}
