import CZlib
import CZstd

/// Encoders for the tests only: recording decodes, so the tests need real compressed bodies to feed it.
enum Compress {
    /// gzip (zlib's deflate with a gzip wrapper, windowBits 31), as nginx and most servers send it.
    static func gzip(_ input: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        guard authtap_deflate_init2(&stream, 6, 31) == Z_OK else { return [] }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))) + 32)
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst -> Int in
                stream.next_in = src.baseAddress
                stream.avail_in = UInt32(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = UInt32(dst.count)
                guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { return 0 }
                return dst.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(produced))
    }

    static func zstd(_ input: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let n = output.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in ZSTD_compress(dst.baseAddress, dst.count, src.baseAddress, src.count, 3) }
        }
        return ZSTD_isError(n) != 0 ? [] : Array(output.prefix(n))
    }

    static func utf16LE(_ text: String, bom: Bool) -> [UInt8] {
        (bom ? [0xFF, 0xFE] : [])
            + text.utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] }
    }
}
