import AuthtapModel
import Foundation
import SwiftASN1
import X509

/// Reassembling each direction's bytes and cutting them into TLS records and handshake messages.
extension HandshakeTracker {
    // MARK: streams

    func absorb(
        _ c: Connection, stream st: Stream, fromClient: Bool, seq: UInt32, payload: UnsafeRawBufferPointer,
        at micros: Int64
    ) {
        if st.nextSeq == nil { st.nextSeq = seq }
        guard let next = st.nextSeq else { return }
        let delta = Int32(bitPattern: seq &- next)
        if delta < 0 {
            // Old data: a retransmission (possibly overlapping new bytes).
            if fromClient, st.firstPayloadSeq == seq, c.serverHello == nil, !c.streams[1].sentAny {
                c.clientHelloRetransmits += 1
            }
            let overlap = -Int(delta)
            guard overlap < payload.count else { return }
            append(c, st, fromClient: fromClient, Array(payload[overlap...]), at: micros)
            st.nextSeq = next &+ UInt32(truncatingIfNeeded: payload.count - overlap)
        } else if delta > 0 {
            if st.outOfOrder.count < limits.maxOutOfOrder {
                st.outOfOrder[seq] = Array(payload)
            } else {
                st.overflow = true
            }
            return
        } else {
            if st.firstPayloadSeq == nil { st.firstPayloadSeq = seq }
            append(c, st, fromClient: fromClient, Array(payload), at: micros)
            st.nextSeq = next &+ UInt32(truncatingIfNeeded: payload.count)
        }
        // Drain segments that are now in order.
        while let n = st.nextSeq, let data = st.outOfOrder.removeValue(forKey: n) {
            append(c, st, fromClient: fromClient, data, at: micros)
            st.nextSeq = n &+ UInt32(truncatingIfNeeded: data.count)
        }
    }

    func append(_ c: Connection, _ st: Stream, fromClient: Bool, _ data: [UInt8], at micros: Int64) {
        st.sentAny = true
        guard !st.overflow, !c.done else { return }
        if st.bytes.count + data.count > limits.maxStreamBytes {
            st.overflow = true
            return
        }
        st.bytes += data
        parseRecords(c, st, fromClient: fromClient, at: micros)
    }

    func parseRecords(_ c: Connection, _ st: Stream, fromClient: Bool, at micros: Int64) {
        var offset = 0
        let b = st.bytes
        defer { if offset > 0 { st.bytes.removeFirst(offset) } }
        while b.count - offset >= 5, !c.done {
            let type = b[offset]
            guard (20...23).contains(type), b[offset + 1] == 3 else {
                if !st.encrypted && c.clientHello == nil && fromClient { c.notTLS = true; c.done = true }
                return
            }
            let length = Int(b[offset + 3]) << 8 | Int(b[offset + 4])
            guard b.count - offset >= 5 + length else { return }
            let body = Array(b[(offset + 5)..<(offset + 5 + length)])
            offset += 5 + length
            let side = fromClient ? "client" : "server"
            switch type {
            case 22 where !st.encrypted:
                st.handshake += body
                parseHandshakeMessages(c, st, fromClient: fromClient, at: micros)
            case 21:
                if !st.encrypted && body.count == 2 {
                    let name = TLSDissector.alertName(body[1])
                    if body[1] == 0 {
                        record(
                            c, .closedDuringHandshake, side: side, at: micros,
                            detail: "the \(side) sent close_notify \(stage(c))");
                        return
                    }
                    let outcome: HandshakeRecord.Outcome = body[1] == 70 ? .versionMismatch : .alert
                    record(
                        c, outcome, side: side, at: micros, alert: name,
                        detail: "the \(side) sent a \(body[0] == 2 ? "fatal" : "warning") \(name) alert \(stage(c))")
                } else {
                    record(
                        c, .alert, side: side, at: micros, alert: "encrypted", encrypted: true,
                        detail: "the \(side) sent an encrypted alert \(stage(c))"
                            + (fromClient
                                ? ": usually the client rejecting the server's certificate (bad_certificate / unknown_ca)"
                                : ""))
                }
                return
            case 20:
                st.encrypted = true
            case 23, 22:
                st.encrypted = true
                st.encryptedRecords += 1
                if st.encryptedRecords == 1 { st.firstEncryptedLength = length }
                checkCompleted(c, at: micros)
            default:
                break
            }
        }
    }

    func parseHandshakeMessages(_ c: Connection, _ st: Stream, fromClient: Bool, at micros: Int64) {
        var offset = 0
        let h = st.handshake
        defer { if offset > 0 { st.handshake.removeFirst(offset) } }
        while h.count - offset >= 4 {
            let length = Int(h[offset + 1]) << 16 | Int(h[offset + 2]) << 8 | Int(h[offset + 3])
            guard h.count - offset >= 4 + length else { return }
            let type = h[offset]
            let message = Array(h[(offset + 4)..<(offset + 4 + length)])
            offset += 4 + length
            switch type {
            case 1 where fromClient && c.clientHello == nil:
                c.clientHello = TLSDissector.parseClientHello(message)
                c.clientHelloAt = micros
            case 2 where !fromClient:
                guard let hello = TLSDissector.parseServerHello(message) else { continue }
                if message.count >= 34, Array(message[2..<34]) == Self.helloRetryRandom {
                    c.helloRetry = true
                    continue
                }
                c.serverHello = hello
                if let offered = c.clientHello, !offered.supportedVersions.isEmpty,
                    !offered.supportedVersions.contains(hello.selectedVersion)
                {
                    record(
                        c, .versionMismatch, side: "server", at: micros,
                        detail:
                            "the server chose \(TLSDissector.versionName(hello.selectedVersion)), which the client did not offer"
                    )
                    return
                }
                if hello.selectedVersion == 0x0304 { st.encrypted = true }
            case 11 where !fromClient && c.certificate == nil:
                // TLS ≤ 1.2: certificate_list<3> of cert_data<3>.
                if message.count >= 6 {
                    let first = Int(message[3]) << 16 | Int(message[4]) << 8 | Int(message[5])
                    if message.count >= 6 + first {
                        c.certificate = try? Certificate(derEncoded: Array(message[6..<(6 + first)]))
                    }
                }
            default:
                break
            }
        }
    }

    /// TLS 1.3 ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
    static let helloRetryRandom: [UInt8] = [
        0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
        0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
    ]

    func checkCompleted(_ c: Connection, at micros: Int64) {
        guard c.serverHello != nil else { return }
        let client = c.streams[0], server = c.streams[1]
        guard client.encrypted, server.encrypted, client.encryptedRecords > 0 else { return }
        if c.isTLS13 && client.encryptedRecords == 1 && client.firstEncryptedLength <= 24 {
            // Too short for a Finished: an alert under the handshake keys. Wait for what follows.
            return
        }
        record(c, .completed, side: nil, at: micros, detail: "handshake completed")
    }
}
