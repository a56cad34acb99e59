import AuthtapModel

/// A terminal screen as plain data: the views draw into it, tests read it, ncurses copies it out.
public struct Style: Equatable, Sendable {
    public enum Color: Int, Sendable, CaseIterable { case red = 1, yellow, green, cyan, magenta, blue }
    public var bold = false
    public var reverse = false
    public var dim = false
    public var color: Color?

    public init(bold: Bool = false, reverse: Bool = false, dim: Bool = false, color: Color? = nil) {
        self.bold = bold
        self.reverse = reverse
        self.dim = dim
        self.color = color
    }
    public static let plain = Style()
    public static let header = Style(bold: true, reverse: true)
    public static let selected = Style(reverse: true)
    public static let error = Style(bold: true, color: .red)
    public static let warning = Style(color: .yellow)
    public static let ok = Style(color: .green)
    public static let masked = Style(color: .magenta)
    public static let key = Style(bold: true, color: .cyan)
}

public struct Cell: Equatable, Sendable {
    /// One grapheme; empty for the second column of a wide character.
    public var text: String
    public var style: Style
    public static let blank = Cell(text: " ", style: .plain)
}

public struct ScreenBuffer: Sendable {
    public let rows: Int
    public let cols: Int
    public private(set) var cells: [Cell]

    public init(rows: Int, cols: Int) {
        self.rows = max(rows, 1)
        self.cols = max(cols, 1)
        cells = Array(repeating: .blank, count: self.rows * self.cols)
    }

    /// Columns a character takes: 0 for combining marks, 2 for East Asian wide and emoji, else 1.
    public static func width(_ c: Character) -> Int {
        guard let first = c.unicodeScalars.first else { return 0 }
        let v = first.value
        if v < 0x20 || (0x7F..<0xA0).contains(v) { return 0 }
        if first.properties.generalCategory == .nonspacingMark || first.properties.generalCategory == .enclosingMark {
            return 0
        }
        if (0x1100...0x115F).contains(v) || (0x2E80...0xA4CF).contains(v) || (0xAC00...0xD7A3).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0xFE30...0xFE4F).contains(v) || (0xFF00...0xFF60).contains(v)
            || (0xFFE0...0xFFE6).contains(v) || (0x1F300...0x1F64F).contains(v) || (0x1F900...0x1F9FF).contains(v)
            || (0x20000...0x3FFFD).contains(v)
        {
            return 2
        }
        return 1
    }

    public static func width(_ s: String) -> Int { s.reduce(0) { $0 + width($1) } }

    /// Writes `text` from (row, col), clipped at `maxWidth` columns (default: to the edge).
    /// Returns the column after the last one written. Control characters (ESC, C1, bidi overrides) are drawn as
    /// visible escapes: whatever a server sent, the cells never hold a byte the terminal would obey.
    @discardableResult
    public mutating func put(_ row: Int, _ col: Int, _ text: String, _ style: Style = .plain, maxWidth: Int? = nil)
        -> Int
    {
        guard row >= 0, row < rows, col < cols else { return col }
        let text = TerminalText.escapeIfControls(text)
        var c = max(col, 0)
        let limit = min(cols, maxWidth.map { col + $0 } ?? cols)
        for ch in text {
            if ch == "\n" || ch == "\r" || ch == "\t" {
                if c < limit { cells[row * cols + c] = Cell(text: " ", style: style); c += 1 }
                continue
            }
            let w = Self.width(ch)
            if w == 0 { continue }
            if c + w > limit { break }
            cells[row * cols + c] = Cell(text: String(ch), style: style)
            if w == 2 { cells[row * cols + c + 1] = Cell(text: "", style: style) }
            c += w
        }
        return c
    }

    /// Paints a whole row (for selection and header bars).
    public mutating func fill(_ row: Int, _ style: Style) {
        guard row >= 0, row < rows else { return }
        for c in 0..<cols {
            cells[row * cols + c].style = style
        }
    }

    public mutating func clear() { cells = Array(repeating: .blank, count: rows * cols) }

    public func cell(_ row: Int, _ col: Int) -> Cell { cells[row * cols + col] }

    /// The text of a row, trailing spaces trimmed (what a test or tmux capture-pane sees).
    public func line(_ row: Int) -> String {
        var s = ""
        for c in 0..<cols { s += cells[row * cols + c].text }
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }

    public var text: String { (0..<rows).map(line).joined(separator: "\n") }
}

/// Clips or pads to exactly `width` columns, with an ellipsis when cut.
public func fit(_ s: String, _ width: Int) -> String {
    guard width > 0 else { return "" }
    // Measured as drawn: a control character takes the columns of its escape.
    let s = TerminalText.escapeIfControls(s)
    let total = ScreenBuffer.width(s)
    if total <= width { return s + String(repeating: " ", count: width - total) }
    var out = ""
    var w = 0
    for ch in s {
        let cw = ScreenBuffer.width(ch)
        if w + cw > width - 1 { break }
        out.append(ch)
        w += cw
    }
    return out + "…" + String(repeating: " ", count: max(0, width - 1 - w))
}
