// A client of the peershare local API written the way EchoChain's C# client is: TcpClient,
// one NetworkStream.Write of the JSON request (no trailing newline, the connection left
// open), then ONE Read(buf, 0, 4096), decoded as UTF-8 and parsed as one JSON object.
//
// Debian's mono-mcs ships no JSON library, so a small strict parser is below; the point of
// this program is the socket pattern, not the parser.
//
// Build and run: mcs -out:Client.exe Client.cs && mono Client.exe HOST PORT 'REQUEST_JSON'
// Prints the parsed reply as one JSON line on stdout and `received N bytes` on stderr.
// Exit status: 0 when a reply was received and parsed, 1 otherwise.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Net.Sockets;
using System.Text;

class Client
{
    static int Main(string[] args)
    {
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: mono Client.exe HOST PORT REQUEST_JSON");
            return 2;
        }
        var utf8 = new UTF8Encoding(false);
        var stdout = new StreamWriter(Console.OpenStandardOutput(), utf8);
        try
        {
            using (var client = new TcpClient(args[0], int.Parse(args[1])))
            using (NetworkStream stream = client.GetStream())
            {
                // A bound for the test suite; EchoChain's client waits as long as it takes.
                stream.ReadTimeout = 120000;
                byte[] request = utf8.GetBytes(args[2]);
                stream.Write(request, 0, request.Length);

                byte[] buf = new byte[4096];
                int n = stream.Read(buf, 0, 4096);
                Console.Error.WriteLine("received " + n + " bytes");
                string text = utf8.GetString(buf, 0, n);
                object reply = Json.ParseObject(text);
                stdout.WriteLine(Json.Write(reply));
                stdout.Flush();
                return 0;
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 1;
        }
    }
}

/// A strict JSON parser (RFC 8259) into Dictionary / List / string / JsonNumber / bool /
/// null, and a compact writer. Number literals are kept as written.
static class Json
{
    public sealed class JsonNumber
    {
        public readonly string Literal;
        public JsonNumber(string literal) { Literal = literal; }
    }

    public static object ParseObject(string s)
    {
        int i = 0;
        object v = Value(s, ref i);
        Ws(s, ref i);
        if (i != s.Length) throw new FormatException("trailing characters at " + i);
        if (!(v is Dictionary<string, object>)) throw new FormatException("not a JSON object");
        return v;
    }

    static void Ws(string s, ref int i)
    {
        while (i < s.Length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    }

    static char Peek(string s, int i)
    {
        if (i >= s.Length) throw new FormatException("unexpected end of input");
        return s[i];
    }

    static void Expect(string s, ref int i, string word)
    {
        if (string.CompareOrdinal(s, i, word, 0, word.Length) != 0)
            throw new FormatException("expected " + word + " at " + i);
        i += word.Length;
    }

    static object Value(string s, ref int i)
    {
        Ws(s, ref i);
        char c = Peek(s, i);
        switch (c)
        {
            case '{':
            {
                var obj = new Dictionary<string, object>();
                i++;
                Ws(s, ref i);
                if (Peek(s, i) == '}') { i++; return obj; }
                while (true)
                {
                    Ws(s, ref i);
                    if (Peek(s, i) != '"') throw new FormatException("expected a key at " + i);
                    string key = Str(s, ref i);
                    Ws(s, ref i);
                    Expect(s, ref i, ":");
                    obj[key] = Value(s, ref i);
                    Ws(s, ref i);
                    char d = Peek(s, i++);
                    if (d == '}') return obj;
                    if (d != ',') throw new FormatException("expected , or } at " + (i - 1));
                }
            }
            case '[':
            {
                var list = new List<object>();
                i++;
                Ws(s, ref i);
                if (Peek(s, i) == ']') { i++; return list; }
                while (true)
                {
                    list.Add(Value(s, ref i));
                    Ws(s, ref i);
                    char d = Peek(s, i++);
                    if (d == ']') return list;
                    if (d != ',') throw new FormatException("expected , or ] at " + (i - 1));
                }
            }
            case '"': return Str(s, ref i);
            case 't': Expect(s, ref i, "true"); return true;
            case 'f': Expect(s, ref i, "false"); return false;
            case 'n': Expect(s, ref i, "null"); return null;
            default:
            {
                int start = i;
                if (s[i] == '-') i++;
                while (i < s.Length && "0123456789.eE+-".IndexOf(s[i]) >= 0) i++;
                string lit = s.Substring(start, i - start);
                double unused;
                if (lit.Length == 0 || !double.TryParse(lit, NumberStyles.Float,
                        CultureInfo.InvariantCulture, out unused))
                    throw new FormatException("unexpected character at " + start);
                return new JsonNumber(lit);
            }
        }
    }

    static string Str(string s, ref int i)
    {
        var sb = new StringBuilder();
        i++; // opening quote
        while (true)
        {
            char c = Peek(s, i++);
            if (c == '"') return sb.ToString();
            if (c < 0x20) throw new FormatException("control character in a string");
            if (c != '\\') { sb.Append(c); continue; }
            char e = Peek(s, i++);
            switch (e)
            {
                case '"': sb.Append('"'); break;
                case '\\': sb.Append('\\'); break;
                case '/': sb.Append('/'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'u':
                    if (i + 4 > s.Length) throw new FormatException("short \\u escape");
                    sb.Append((char)int.Parse(s.Substring(i, 4), NumberStyles.HexNumber));
                    i += 4;
                    break;
                default: throw new FormatException("bad escape \\" + e);
            }
        }
    }

    public static string Write(object v)
    {
        var sb = new StringBuilder();
        Write(sb, v);
        return sb.ToString();
    }

    static void Write(StringBuilder sb, object v)
    {
        if (v == null) { sb.Append("null"); return; }
        if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
        if (v is JsonNumber) { sb.Append(((JsonNumber)v).Literal); return; }
        if (v is string) { WriteStr(sb, (string)v); return; }
        var obj = v as Dictionary<string, object>;
        if (obj != null)
        {
            sb.Append('{');
            bool first = true;
            foreach (var kv in obj)
            {
                if (!first) sb.Append(',');
                first = false;
                WriteStr(sb, kv.Key);
                sb.Append(':');
                Write(sb, kv.Value);
            }
            sb.Append('}');
            return;
        }
        sb.Append('[');
        bool firstItem = true;
        foreach (var item in (List<object>)v)
        {
            if (!firstItem) sb.Append(',');
            firstItem = false;
            Write(sb, item);
        }
        sb.Append(']');
    }

    static void WriteStr(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            if (c == '"') sb.Append("\\\"");
            else if (c == '\\') sb.Append("\\\\");
            else if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4"));
            else sb.Append(c);
        }
        sb.Append('"');
    }
}
