import Foundation

/// The result of undoing a body's content and transfer codings.
public struct DecodedBody: Sendable, Equatable {
    /// The decoded output, at most `limit` bytes.
    public var bytes: [UInt8]
    /// The output is incomplete: it stopped at `limit` (a big body or a decompression bomb), or the input was only
    /// a prefix of the body and ended mid-stream.
    public var truncated: Bool
    /// The codings that were undone, in header order (Content-Encoding then Transfer-Encoding), lower-cased and
    /// canonical (`x-gzip` is reported as `gzip`); `[]` for identity.
    public var codings: [String]
    /// `nil` on success; otherwise a short human reason, and then `bytes` is empty.
    public var failure: String?

    public init(bytes: [UInt8], truncated: Bool, codings: [String], failure: String? = nil) {
        self.bytes = bytes
        self.truncated = truncated
        self.codings = codings
        self.failure = failure
    }
}

/// Undoes HTTP content codings (gzip, deflate, br, zstd) with bounded memory: every stage streams its decoder in
/// fixed-size chunks and stops at `limit` output bytes.
public enum BodyDecoder {
    /// Decodes a body.
    ///
    /// Memory stays near `limit`: each stage holds at most `limit` bytes plus a 64 KiB chunk, and stacked codings
    /// hold one stage's input and output at a time. The decoders' own state is bounded by their format's window
    /// (zlib 32 KiB, brotli up to 16 MiB, zstd capped at the 8 MiB RFC 8878 allows for HTTP). gzip members and zstd
    /// frames that follow one another are all decoded; bytes after a complete stream are ignored, as browsers do.
    ///
    /// - Parameters:
    ///   - bytes: the body as received, already de-chunked by the HTTP parser (so `chunked` is a no-op here).
    ///   - contentEncoding: the raw Content-Encoding value, possibly a list (`"gzip, br"`) or nil.
    ///   - transferEncoding: the raw Transfer-Encoding value, possibly a list (`"gzip, chunked"`) or nil.
    ///     Its codings were applied after (outside) the content codings, so they are undone first.
    ///   - limit: the most bytes any stage may produce; reaching it makes the result `truncated`.
    ///   - inputComplete: false when `bytes` is only a prefix of the body; a stream that then ends early is
    ///     `truncated`. When true, a stream that ends early is a failure: the body the server sent is broken.
    /// - Returns: the decoded bytes, or a failure with empty bytes (unknown coding, corrupt stream).
    public static func decode(
        _ bytes: [UInt8], contentEncoding: String?, transferEncoding: String?, limit: Int, inputComplete: Bool
    ) -> DecodedBody {
        let limit = max(0, limit)
        let names = codingNames(contentEncoding) + codingNames(transferEncoding).filter { $0 != "chunked" }
        var codings: [Coding] = []
        for name in names where name != "identity" {
            guard let coding = Coding(name: name) else {
                return DecodedBody(bytes: [], truncated: false, codings: [], failure: "unknown coding '\(name)'")
            }
            codings.append(coding)
        }
        let reported = codings.map(\.rawValue)

        if codings.isEmpty {
            // Identity: the body is the output, so the limit applies to it directly.
            guard bytes.count > limit else { return DecodedBody(bytes: bytes, truncated: !inputComplete, codings: []) }
            return DecodedBody(bytes: Array(bytes.prefix(limit)), truncated: true, codings: [])
        }

        var current = bytes
        // Whether `current` is the whole of its layer: false once the capture or an earlier stage was cut short.
        var complete = inputComplete
        // Sticky: a stage that was cut short makes the result truncated even when an inner stream still ended
        // (say gzip's trailer is missing around a whole br stream): the body was not all seen.
        var truncated = false
        // The sender applied the codings in listed order, so the last one listed is the outermost.
        for coding in codings.reversed() {
            // An empty body with a coding is common (HEAD-like replies, 204 with a stray header): nothing to undo.
            if current.isEmpty { continue }
            let stage = coding.decode(current, limit: limit)
            switch stage.end {
            case .finished(let atMemberBoundary):
                // The layer is whole once its stream ended, even in a prefix (what follows is garbage), unless the
                // prefix stops exactly between gzip members or zstd frames: more of them may follow.
                if !complete && atMemberBoundary { truncated = true } else { complete = true }
            case .inputEnded:
                guard !complete else {
                    let reason = "incomplete \(coding.rawValue) stream (the body ends mid-stream)"
                    return DecodedBody(bytes: [], truncated: false, codings: reported, failure: reason)
                }
                truncated = true
            case .limitReached:
                truncated = true
                complete = false
            case .failed(let reason):
                return DecodedBody(bytes: [], truncated: false, codings: reported, failure: reason)
            }
            current = stage.bytes
        }
        return DecodedBody(bytes: current, truncated: truncated || !complete, codings: reported)
    }

    /// Splits a coding list header into lower-cased, trimmed, non-empty names.
    static func codingNames(_ header: String?) -> [String] {
        guard let header else { return [] }
        return header.split(separator: ",").compactMap { part in
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            return name.isEmpty ? nil : name
        }
    }
}

/// A content coding this module can undo.
enum Coding: String, Sendable {
    case gzip, deflate, br, zstd

    init?(name: String) {
        switch name {
        case "gzip", "x-gzip": self = .gzip
        case "deflate": self = .deflate
        case "br": self = .br
        case "zstd": self = .zstd
        default: return nil
        }
    }

    func decode(_ input: [UInt8], limit: Int) -> StageResult {
        switch self {
        case .gzip: Inflate.gzip(input, limit: limit)
        case .deflate: Inflate.deflate(input, limit: limit)
        case .br: Brotli.decode(input, limit: limit)
        case .zstd: Zstd.decode(input, limit: limit)
        }
    }
}

/// What one decoding stage produced and why it stopped.
struct StageResult {
    enum End: Equatable {
        /// The stream ended. `atMemberBoundary`: the input ran out exactly at the end of a gzip member or zstd
        /// frame, where another could have followed.
        case finished(atMemberBoundary: Bool)
        /// All input was consumed before the stream ended.
        case inputEnded
        /// The output reached the limit before the stream ended.
        case limitReached
        case failed(String)
    }

    var bytes: [UInt8]
    var end: End

    static func failed(_ reason: String) -> StageResult { StageResult(bytes: [], end: .failed(reason)) }
}

/// Collects a decoder's output up to a limit, so a bomb costs at most `limit` plus one chunk of memory.
struct BoundedOutput {
    /// Every decoder writes into a scratch buffer of this size, then appends what fits.
    static let chunkSize = 64 * 1024

    let limit: Int
    private(set) var bytes: [UInt8] = []

    init(limit: Int) { self.limit = limit }

    /// Appends what fits; returns false once the limit has been exceeded and decoding should stop.
    mutating func append(_ chunk: UnsafeBufferPointer<UInt8>) -> Bool {
        let room = limit - bytes.count
        let needed = bytes.count + min(chunk.count, room)
        if needed > bytes.capacity {
            // Grow geometrically as Array would, but never past the limit: its doubling could otherwise reserve
            // nearly twice the limit for a bomb.
            bytes.reserveCapacity(min(limit, max(needed, bytes.capacity * 2)))
        }
        if chunk.count > room {
            bytes.append(contentsOf: chunk.prefix(room))
            return false
        }
        bytes.append(contentsOf: chunk)
        return true
    }
}
