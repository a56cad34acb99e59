import CZlib

/// zlib's inflate, streamed in fixed-size output chunks, for the `gzip` and `deflate` codings.
enum Inflate {
    enum Format {
        case gzip, zlib, raw

        /// inflateInit2's window bits: 15 is the largest window; +16 asks for a gzip wrapper, negative for none.
        var windowBits: Int32 {
            switch self {
            case .gzip: 16 + 15
            case .zlib: 15
            case .raw: -15
            }
        }
    }

    static func gzip(_ input: [UInt8], limit: Int) -> StageResult {
        run(input, format: .gzip, coding: "gzip", limit: limit)
    }

    /// `deflate` is specified as zlib-wrapped (RFC 9110 §8.4.1.2), yet servers also send raw deflate, so the
    /// zlib header check picks the format, and a stream that passes it by chance but fails is retried as raw.
    static func deflate(_ input: [UInt8], limit: Int) -> StageResult {
        guard hasZlibHeader(input) else { return run(input, format: .raw, coding: "deflate", limit: limit) }
        let wrapped = run(input, format: .zlib, coding: "deflate", limit: limit)
        guard case .failed = wrapped.end else { return wrapped }
        let raw = run(input, format: .raw, coding: "deflate", limit: limit)
        if case .failed = raw.end { return wrapped }
        return raw
    }

    /// RFC 1950: CM 8 (deflate), a window of at most 32 KiB, and a 16-bit header that is a multiple of 31.
    /// A lone first byte that could start such a header counts, so that a one-byte prefix reads as truncated.
    static func hasZlibHeader(_ input: [UInt8]) -> Bool {
        guard let cmf = input.first, cmf & 0x0F == 8, cmf >> 4 <= 7 else { return false }
        guard input.count >= 2 else { return true }
        return (UInt16(cmf) << 8 | UInt16(input[1])) % 31 == 0
    }

    private static let gzipMagic: [UInt8] = [0x1F, 0x8B]

    private static func run(_ input: [UInt8], format: Format, coding: String, limit: Int) -> StageResult {
        if input.isEmpty { return StageResult(bytes: [], end: .inputEnded) }
        var stream = z_stream()
        let initStatus = authtap_inflate_init2(&stream, format.windowBits)
        guard initStatus == Z_OK else { return .failed("\(coding) decoder could not start (zlib: \(initStatus))") }
        defer { inflateEnd(&stream) }

        var output = BoundedOutput(limit: limit)
        var chunk = [UInt8](repeating: 0, count: BoundedOutput.chunkSize)
        let end: StageResult.End = input.withUnsafeBufferPointer { inBuf in
            chunk.withUnsafeMutableBufferPointer { outBuf in
                guard let inBase = inBuf.baseAddress, let outBase = outBuf.baseAddress else { return .inputEnded }
                // avail_in is 32 bits, so a larger input is fed in slices.
                var fed = 0
                while true {
                    if stream.avail_in == 0 && fed < inBuf.count {
                        let slice = min(inBuf.count - fed, Int(UInt32.max))
                        stream.next_in = UnsafeMutablePointer(mutating: inBase + fed)
                        stream.avail_in = UInt32(slice)
                        fed += slice
                    }
                    stream.next_out = outBase
                    stream.avail_out = UInt32(outBuf.count)
                    let status = inflate(&stream, Z_NO_FLUSH)
                    let produced = outBuf.count - Int(stream.avail_out)
                    guard output.append(UnsafeBufferPointer(rebasing: outBuf[..<produced])) else {
                        return .limitReached
                    }
                    switch status {
                    case Z_OK:
                        continue
                    case Z_STREAM_END:
                        let rest = inBuf[(fed - Int(stream.avail_in))...]
                        guard format == .gzip else {
                            // Trailing bytes after a complete stream are ignored, as browsers do: the body decoded.
                            return .finished(atMemberBoundary: false)
                        }
                        if rest.starts(with: gzipMagic) {
                            // Concatenated gzip members decode as one body (RFC 1952 §2.2), as `gzip -d` does.
                            guard inflateReset(&stream) == Z_OK else { return .failed("gzip decoder could not reset") }
                            continue
                        }
                        // Nothing left, or a cut inside the next member's magic: another member may follow.
                        // Anything else is trailing garbage, ignored as `gzip -d` does.
                        let boundary = rest.isEmpty || (rest.count == 1 && rest.first == gzipMagic[0])
                        return .finished(atMemberBoundary: boundary)
                    case Z_BUF_ERROR where stream.avail_in == 0 && fed == inBuf.count:
                        return .inputEnded
                    case Z_NEED_DICT:
                        return .failed("corrupt \(coding) stream (zlib: needs a preset dictionary)")
                    default:
                        let reason = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                        return .failed("corrupt \(coding) stream (zlib: \(reason))")
                    }
                }
            }
        }
        if case .failed(let reason) = end { return .failed(reason) }
        return StageResult(bytes: output.bytes, end: end)
    }
}
