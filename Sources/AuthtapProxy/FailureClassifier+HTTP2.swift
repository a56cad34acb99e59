import AuthtapModel
import NIOHTTP2

/// HTTP/2's own failures, named by their RFC 9113 §7 error codes.
extension FailureClassifier {
    /// The code as RFC 9113 §7 spells it (`REFUSED_STREAM`), with its number for codes the RFC does not name.
    static func name(_ code: HTTP2ErrorCode) -> String {
        let names = [
            "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
            "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
        ]
        let number = code.networkCode
        guard number >= 0, number < names.count else { return "0x\(String(number, radix: 16))" }
        return names[number]
    }

    /// A code read off the wire.
    static func name(code: UInt32) -> String { name(HTTP2ErrorCode(networkCode: Int(code))) }

    /// What a GOAWAY frame said: its code and the last stream the sender will still answer.
    struct GoAway {
        var code: HTTP2ErrorCode
        var lastStreamID: Int
    }

    /// Why an upstream HTTP/2 stream ended before its response did, or `nil` when HTTP/2 has no word for it
    /// (the connection closed or reset: the HTTP/1 classification applies).
    static func upstreamStream(_ error: (any Error)?, goAway: GoAway?, streamID: Int?) -> Failure? {
        if let goAway, let streamID, streamID > goAway.lastStreamID {
            return Failure(
                kind: .upstreamGoAway, tls: nil,
                detail: """
                    the upstream server sent GOAWAY (\(name(goAway.code)), last stream \(goAway.lastStreamID)) \
                    and will not answer stream \(streamID)
                    """)
        }
        if let closed = error as? NIOHTTP2Errors.StreamClosed {
            return Failure(
                kind: .upstreamStreamReset, tls: nil,
                detail: """
                    the upstream server reset stream \(Int(closed.streamID)) with RST_STREAM \(name(closed.errorCode))
                    """)
        }
        if let goAway, goAway.code != .noError {
            return Failure(
                kind: .upstreamGoAway, tls: nil,
                detail: "the upstream server closed the HTTP/2 connection with GOAWAY (\(name(goAway.code)))")
        }
        if let error = error as? any NIOHTTP2Error {
            return Failure(kind: .upstreamHTTP2, tls: nil, detail: "the upstream server broke HTTP/2: \(error)")
        }
        return nil
    }

    /// Why the client ended an HTTP/2 stream of its own before its exchange finished.
    static func clientStream(_ error: any Error) -> (kind: ErrorKind, detail: String) {
        if let closed = error as? NIOHTTP2Errors.StreamClosed {
            let code = name(closed.errorCode)
            return (.clientGone, "the client reset stream \(Int(closed.streamID)) with RST_STREAM \(code)")
        }
        if let error = error as? any NIOHTTP2Error {
            return (.clientHTTP2, "the client broke HTTP/2: \(error)")
        }
        return (.clientGone, "client stream failed: \(type(of: error))")
    }
}
