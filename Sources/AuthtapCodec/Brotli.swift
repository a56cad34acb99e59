import CBrotli

/// The brotli decoder, streamed in fixed-size output chunks, for the `br` coding.
enum Brotli {
    static func decode(_ input: [UInt8], limit: Int) -> StageResult {
        if input.isEmpty { return StageResult(bytes: [], end: .inputEnded) }
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else {
            return .failed("br decoder could not start")
        }
        defer { BrotliDecoderDestroyInstance(state) }

        var output = BoundedOutput(limit: limit)
        var chunk = [UInt8](repeating: 0, count: BoundedOutput.chunkSize)
        let end: StageResult.End = input.withUnsafeBufferPointer { inBuf in
            chunk.withUnsafeMutableBufferPointer { outBuf in
                guard let outBase = outBuf.baseAddress else { return .inputEnded }
                var availableIn = inBuf.count
                var nextIn = inBuf.baseAddress
                while true {
                    var availableOut = outBuf.count
                    var nextOut: UnsafeMutablePointer<UInt8>? = outBase
                    let result = BrotliDecoderDecompressStream(
                        state, &availableIn, &nextIn, &availableOut, &nextOut, nil
                    )
                    let produced = outBuf.count - availableOut
                    guard output.append(UnsafeBufferPointer(rebasing: outBuf[..<produced])) else {
                        return .limitReached
                    }
                    switch result {
                    case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
                        continue
                    case BROTLI_DECODER_RESULT_SUCCESS:
                        // Bytes left in `availableIn` follow a complete stream: ignored, the body decoded.
                        return .finished(atMemberBoundary: false)
                    case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
                        // The whole input was offered at once, so "more input" means it ended mid-stream.
                        return .inputEnded
                    default:
                        return .failed("corrupt br stream (brotli: \(errorName(state)))")
                    }
                }
            }
        }
        if case .failed(let reason) = end { return .failed(reason) }
        return StageResult(bytes: output.bytes, end: end)
    }

    /// Brotli names its errors like `_ERROR_FORMAT_PADDING_1`; this reads "format padding 1".
    private static func errorName(_ state: OpaquePointer) -> String {
        guard let cName = BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state)) else { return "unknown error" }
        var name = String(cString: cName)
        if name.hasPrefix("_ERROR_") { name.removeFirst("_ERROR_".count) }
        return name.lowercased().replacingOccurrences(of: "_", with: " ")
    }
}
