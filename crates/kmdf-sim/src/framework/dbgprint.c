/*
 * DbgPrint and DbgPrintEx for the simulation: the kernel's C-variadic signatures, which stable
 * Rust can declare but not define. Formats into one line of at most 512 bytes, as the kernel does (longer output
 * is truncated), and hands it to the Rust side (debug_output.rs), which prints and keeps it.
 *
 * Conversions follow the Windows kernel's printf family, not the host C library, so that a
 * driver's format strings mean what they mean on Windows:
 *   %d %i %u %x %X %o %c %s %p %%; numbers take flags (- 0 + space #), width and precision
 *   (also *), strings (%s, %ws) a width and a precision;
 *   size prefixes: h (16-bit), l (32-bit: LONG/ULONG, as on Windows), ll and I64 (64-bit),
 *   I32 (32-bit), I (pointer-sized);
 *   %ws %ls %S: NUL-terminated UTF-16 string; %wc %lc %C: UTF-16 character;
 *   %wZ: PCUNICODE_STRING (counted UTF-16); %Z: PCANSI_STRING (counted bytes);
 *   UTF-16 text is written as UTF-8; a NULL string or counted-string pointer prints "(null)".
 * Floating point (%f %e %g) is not supported by the kernel's DbgPrint and is printed as written.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define DBGPRINT_LIMIT 512

void kmdf_sim_debug_print(const char *text, size_t length);

struct out {
    char text[DBGPRINT_LIMIT];
    size_t length;
};

static void put(struct out *out, char c) {
    if (out->length + 1 < DBGPRINT_LIMIT) {
        out->text[out->length++] = c;
    }
}

static void put_utf8(struct out *out, uint32_t c) {
    if (c < 0x80) {
        put(out, (char)c);
    } else if (c < 0x800) {
        put(out, (char)(0xC0 | (c >> 6)));
        put(out, (char)(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        put(out, (char)(0xE0 | (c >> 12)));
        put(out, (char)(0x80 | ((c >> 6) & 0x3F)));
        put(out, (char)(0x80 | (c & 0x3F)));
    } else {
        put(out, (char)(0xF0 | (c >> 18)));
        put(out, (char)(0x80 | ((c >> 12) & 0x3F)));
        put(out, (char)(0x80 | ((c >> 6) & 0x3F)));
        put(out, (char)(0x80 | (c & 0x3F)));
    }
}

/* Decodes UTF-16 units (count, or up to a NUL when count is SIZE_MAX) into UTF-8, at most
 * `limit` characters. */
static void put_utf16(struct out *out, const uint16_t *units, size_t count, size_t limit) {
    size_t i = 0;
    size_t written = 0;
    while (i < count && written < limit && (count != SIZE_MAX || units[i] != 0)) {
        uint32_t c = units[i++];
        if (c >= 0xD800 && c < 0xDC00 && i < count && units[i] >= 0xDC00 && units[i] < 0xE000) {
            c = 0x10000 + ((c - 0xD800) << 10) + (units[i++] - 0xDC00);
        } else if (c >= 0xD800 && c < 0xE000) {
            c = 0xFFFD;
        }
        put_utf8(out, c);
        written++;
    }
}

static void put_text(struct out *out, const char *text, size_t limit) {
    for (; *text != 0 && limit > 0; text++, limit--) {
        put(out, *text);
    }
}

static void put_padding(struct out *out, int count, char c) {
    while (count-- > 0) {
        put(out, c);
    }
}

struct spec {
    int left, zero, plus, space, alt, width, precision;
};

static void put_number(struct out *out, const struct spec *spec, uint64_t value, int negative,
                       unsigned base, int upper) {
    char digits[24];
    int n = 0;
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[n++] = set[value % base];
        value /= base;
    } while (value != 0);
    if (spec->precision == 0 && n == 1 && digits[0] == '0') {
        n = 0;
    }
    char prefix[3];
    int p = 0;
    if (negative) {
        prefix[p++] = '-';
    } else if (spec->plus) {
        prefix[p++] = '+';
    } else if (spec->space) {
        prefix[p++] = ' ';
    }
    if (spec->alt && base == 16 && n > 0) {
        prefix[p++] = '0';
        prefix[p++] = upper ? 'X' : 'x';
    } else if (spec->alt && base == 8) {
        prefix[p++] = '0';
    }
    int zeros = spec->precision > n ? spec->precision - n : 0;
    int pad = spec->width - p - zeros - n;
    if (!spec->left && !(spec->zero && spec->precision < 0)) {
        put_padding(out, pad, ' ');
    }
    for (int i = 0; i < p; i++) {
        put(out, prefix[i]);
    }
    if (!spec->left && spec->zero && spec->precision < 0) {
        put_padding(out, pad, '0');
    }
    put_padding(out, zeros, '0');
    while (n > 0) {
        put(out, digits[--n]);
    }
    if (spec->left) {
        put_padding(out, pad, ' ');
    }
}

/* Counted strings as the kernel lays them out (UNICODE_STRING, ANSI_STRING). */
struct counted16 {
    uint16_t length, maximum_length;
    const uint16_t *buffer;
};
struct counted8 {
    uint16_t length, maximum_length;
    const char *buffer;
};

static void vdbgprint(const char *format, va_list args) {
    struct out out;
    out.length = 0;
    for (const char *f = format; f != NULL && *f != 0; f++) {
        if (*f != '%') {
            put(&out, *f);
            continue;
        }
        const char *start = f++;
        struct spec spec = {0, 0, 0, 0, 0, 0, -1};
        for (;; f++) {
            if (*f == '-') spec.left = 1;
            else if (*f == '0') spec.zero = 1;
            else if (*f == '+') spec.plus = 1;
            else if (*f == ' ') spec.space = 1;
            else if (*f == '#') spec.alt = 1;
            else break;
        }
        if (*f == '*') {
            spec.width = va_arg(args, int);
            if (spec.width < 0) {
                spec.left = 1;
                spec.width = -spec.width;
            }
            f++;
        } else {
            while (*f >= '0' && *f <= '9') spec.width = spec.width * 10 + (*f++ - '0');
        }
        if (*f == '.') {
            f++;
            spec.precision = 0;
            if (*f == '*') {
                spec.precision = va_arg(args, int);
                f++;
            } else {
                while (*f >= '0' && *f <= '9') spec.precision = spec.precision * 10 + (*f++ - '0');
            }
        }
        /* Size: 2 = 16-bit, 4 = 32-bit, 8 = 64-bit; wide selects UTF-16 for c, s. */
        int size = 4;
        int wide = 0;
        if (f[0] == 'I' && f[1] == '6' && f[2] == '4') { size = 8; f += 3; }
        else if (f[0] == 'I' && f[1] == '3' && f[2] == '2') { size = 4; f += 3; }
        else if (f[0] == 'I') { size = (int)sizeof(void *); f++; }
        else if (f[0] == 'l' && f[1] == 'l') { size = 8; f += 2; }
        else if (f[0] == 'l') { wide = 1; f++; }
        else if (f[0] == 'h' && f[1] == 'h') { size = 1; f += 2; }
        else if (f[0] == 'h') { size = 2; f++; }
        else if (f[0] == 'w') { wide = 1; f++; }
        uint64_t value;
        int negative = 0;
        switch (*f) {
        case 'd':
        case 'i': {
            int64_t v = size == 8 ? va_arg(args, int64_t) : (int64_t)va_arg(args, int);
            if (size == 2) v = (int16_t)v;
            if (size == 1) v = (int8_t)v;
            negative = v < 0;
            value = negative ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            put_number(&out, &spec, value, negative, 10, 0);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o':
            value = size == 8 ? va_arg(args, uint64_t) : (uint64_t)va_arg(args, unsigned int);
            if (size == 2) value = (uint16_t)value;
            if (size == 1) value = (uint8_t)value;
            put_number(&out, &spec, value, 0, *f == 'u' ? 10 : *f == 'o' ? 8 : 16, *f == 'X');
            break;
        case 'p': {
            struct spec pointer = {spec.left, 1, 0, 0, 0, (int)(2 * sizeof(void *)), -1};
            put_number(&out, &pointer, (uint64_t)(uintptr_t)va_arg(args, void *), 0, 16, 1);
            break;
        }
        case 'c':
        case 'C': {
            int c = va_arg(args, int);
            put_padding(&out, spec.left ? 0 : spec.width - 1, ' ');
            if (wide || *f == 'C') {
                uint16_t unit = (uint16_t)c;
                put_utf16(&out, &unit, 1, 1);
            } else {
                put(&out, (char)c);
            }
            put_padding(&out, spec.left ? spec.width - 1 : 0, ' ');
            break;
        }
        case 's':
        case 'S': {
            const void *s = va_arg(args, const void *);
            size_t limit = spec.precision < 0 ? SIZE_MAX : (size_t)spec.precision;
            size_t count = 0;
            if (s == NULL) {
                count = limit < 6 ? limit : 6;
            } else if (wide || *f == 'S') {
                for (const uint16_t *u = (const uint16_t *)s; count < limit && u[count] != 0;) count++;
            } else {
                for (const char *c = (const char *)s; count < limit && c[count] != 0;) count++;
            }
            int pad = spec.width > (int)count ? spec.width - (int)count : 0;
            if (!spec.left) put_padding(&out, pad, ' ');
            if (s == NULL) {
                put_text(&out, "(null)", limit);
            } else if (wide || *f == 'S') {
                put_utf16(&out, (const uint16_t *)s, SIZE_MAX, limit);
            } else {
                put_text(&out, (const char *)s, limit);
            }
            if (spec.left) put_padding(&out, pad, ' ');
            break;
        }
        case 'Z': {
            const void *s = va_arg(args, const void *);
            if (s == NULL) {
                put_text(&out, "(null)", SIZE_MAX);
            } else if (wide) {
                const struct counted16 *u = (const struct counted16 *)s;
                if (u->buffer != NULL) put_utf16(&out, u->buffer, u->length / 2, SIZE_MAX);
            } else {
                const struct counted8 *a = (const struct counted8 *)s;
                for (uint16_t i = 0; a->buffer != NULL && i < a->length; i++) put(&out, a->buffer[i]);
            }
            break;
        }
        case '%':
            put(&out, '%');
            break;
        default:
            /* Unknown conversion: copied as written, without consuming an argument. */
            for (const char *c = start; c <= f && *c != 0; c++) put(&out, *c);
            if (*f == 0) f--;
            break;
        }
    }
    kmdf_sim_debug_print(out.text, out.length);
}

uint32_t DbgPrint(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vdbgprint(format, args);
    va_end(args);
    return 0; /* STATUS_SUCCESS */
}

/* DbgPrintEx: the kernel filters by component and level (by default only DPFLTR_ERROR_LEVEL is
 * shown); the simulation shows every level. */
uint32_t DbgPrintEx(uint32_t component_id, uint32_t level, const char *format, ...) {
    (void)component_id;
    (void)level;
    va_list args;
    va_start(args, format);
    vdbgprint(format, args);
    va_end(args);
    return 0; /* STATUS_SUCCESS */
}
