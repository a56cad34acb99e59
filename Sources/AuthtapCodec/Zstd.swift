import CZstd

/// The zstd decoder, streamed in fixed-size output chunks, for the `zstd` coding.
enum Zstd {
    /// RFC 8878 §3.1.1.1.2: a `zstd` content coding uses a window of at most 8 MiB. Capping the decoder there keeps
    /// a hostile frame header from making it allocate a larger window than a compliant sender could need.
    static let windowLogMax: Int32 = 23

    static func decode(_ input: [UInt8], limit: Int) -> StageResult {
        if input.isEmpty { return StageResult(bytes: [], end: .inputEnded) }
        guard let context = ZSTD_createDCtx() else { return .failed("zstd decoder could not start") }
        defer { ZSTD_freeDCtx(context) }
        let setup = ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, windowLogMax)
        guard ZSTD_isError(setup) == 0 else {
            return .failed("zstd decoder could not start (zstd: \(errorName(setup)))")
        }

        var output = BoundedOutput(limit: limit)
        var chunk = [UInt8](repeating: 0, count: BoundedOutput.chunkSize)
        let end: StageResult.End = input.withUnsafeBufferPointer { inBuf in
            chunk.withUnsafeMutableBufferPointer { outBuf in
                guard let inBase = inBuf.baseAddress, let outBase = outBuf.baseAddress else { return .inputEnded }
                var inBuffer = ZSTD_inBuffer(src: inBase, size: inBuf.count, pos: 0)
                while true {
                    var outBuffer = ZSTD_outBuffer(dst: outBase, size: outBuf.count, pos: 0)
                    let status = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    if ZSTD_isError(status) != 0 { return .failed("corrupt zstd stream (zstd: \(errorName(status)))") }
                    guard output.append(UnsafeBufferPointer(rebasing: outBuf[..<outBuffer.pos])) else {
                        return .limitReached
                    }
                    if status == 0 {
                        // A frame ended and is flushed. Further frames (or skippable ones) belong to the same body.
                        let rest = inBuf[inBuffer.pos...]
                        if rest.isEmpty || (rest.count < 4 && startsFrame(rest, partial: true)) {
                            return .finished(atMemberBoundary: true)
                        }
                        // Trailing garbage after a complete frame is ignored, as browsers do: the body decoded.
                        if !startsFrame(rest, partial: false) { return .finished(atMemberBoundary: false) }
                        continue
                    }
                    // With input all consumed and room left in the output, the decoder is waiting for more input.
                    if inBuffer.pos == inBuffer.size && outBuffer.pos < outBuffer.size { return .inputEnded }
                }
            }
        }
        if case .failed(let reason) = end { return .failed(reason) }
        return StageResult(bytes: output.bytes, end: end)
    }

    /// Whether `bytes` begin a zstd frame (magic 0xFD2FB528) or a skippable frame (0x184D2A50...5F), little-endian.
    /// `partial`: `bytes` is shorter than a magic number and only has to agree with one so far.
    private static func startsFrame(_ bytes: some Collection<UInt8>, partial: Bool) -> Bool {
        let head = Array(bytes.prefix(4))
        guard partial || head.count == 4 else { return false }
        let frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
        if frame.starts(with: head) { return true }
        guard let first = head.first, first & 0xF0 == 0x50 else { return false }
        return [0x2A, 0x4D, 0x18].starts(with: head.dropFirst())
    }

    private static func errorName(_ code: Int) -> String {
        guard let cName = ZSTD_getErrorName(code) else { return "error \(code)" }
        return String(cString: cName)
    }
}
