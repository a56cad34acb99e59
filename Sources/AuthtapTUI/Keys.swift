/// Keys as the views understand them; the terminal backend maps its codes through `KeyParser`.
public enum Key: Equatable, Sendable {
    case up, down, left, right, pageUp, pageDown, top, bottom
    case enter, escape, tab, backTab, backspace, resize
    case char(Character)
}

public enum KeyParser {
    /// ncurses key codes (KEY_* values from <curses.h>).
    public static let codes: [Int32: Key] = [
        0o403: .up, 0o402: .down, 0o404: .left, 0o405: .right, 0o523: .pageUp, 0o522: .pageDown,
        0o406: .top, 0o550: .bottom, 0o527: .enter, 0o407: .backspace, 0o541: .backTab, 0o632: .resize,
    ]

    /// One key from an ncurses code (or a UTF-8 character code point).
    public static func parse(_ code: Int32) -> Key? {
        if let key = codes[code] { return key }
        switch code {
        case 10, 13: return .enter
        case 27: return .escape
        case 9: return .tab
        case 8, 127: return .backspace
        case 32...126: return .char(Character(Unicode.Scalar(UInt8(truncatingIfNeeded: code))))
        default:
            if code > 127, let scalar = Unicode.Scalar(UInt32(truncatingIfNeeded: code)) {
                return .char(Character(scalar))
            }
            return nil
        }
    }

    /// Navigation meaning of a key, shared by every list: j/k and arrows, g/G, PgUp/PgDn.
    public static func motion(_ key: Key) -> Motion? {
        switch key {
        case .up, .char("k"): return .by(-1)
        case .down, .char("j"): return .by(1)
        case .pageUp: return .page(-1)
        case .pageDown, .char(" "): return .page(1)
        case .top, .char("g"): return .top
        case .bottom, .char("G"): return .bottom
        default: return nil
        }
    }

    public enum Motion: Equatable, Sendable {
        case by(Int), page(Int), top, bottom
    }
}
