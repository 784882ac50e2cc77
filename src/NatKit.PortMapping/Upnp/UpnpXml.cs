using System.Xml;

namespace NatKit.PortMapping.Upnp;

/// <summary>
/// How NatKit reads XML from strangers (descriptions, SOAP): no DTD (a document with one is refused, so no entity
/// expansion and no external entities), no resolver, a size cap, and exceptions turned into false.
/// </summary>
internal static class UpnpXml
{
    /// <summary>The largest document read: a description or a SOAP message is a few kilobytes.</summary>
    public const int MaxDocumentChars = 64 * 1024;

    public static XmlReaderSettings Settings { get; } = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersInDocument = MaxDocumentChars,
        MaxCharactersFromEntities = 0,
        IgnoreComments = true,
        IgnoreProcessingInstructions = true,
        IgnoreWhitespace = true,
        CloseInput = true,
    };

    /// <summary>Runs <paramref name="read"/> over <paramref name="text"/>; false when the XML is bad, too large or
    /// has a DTD.</summary>
    public static bool TryRead<T>(string text, Func<XmlReader, T?> read, out T result)
        where T : class
    {
        result = null!;
        if (text.Length > MaxDocumentChars)
        {
            return false;
        }

        try
        {
            using var reader = XmlReader.Create(new StringReader(text), Settings);
            var r = read(reader);
            if (r is null)
            {
                return false;
            }

            result = r;
            return true;
        }
        catch (XmlException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Escapes text for an element's content or an attribute value; characters XML cannot carry at all
    /// (controls, lone surrogates) are left out.</summary>
    public static string Escape(string text) =>
        Clean(text).Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
            .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal)
            .Replace("'", "&apos;", StringComparison.Ordinal);

    private static string Clean(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (!XmlConvert.IsXmlChar(text[i]) && !(char.IsHighSurrogate(text[i]) && i + 1 < text.Length &&
                                                    XmlConvert.IsXmlSurrogatePair(text[i + 1], text[i])))
            {
                var b = new System.Text.StringBuilder(text.Length);
                for (var j = 0; j < text.Length; j++)
                {
                    if (XmlConvert.IsXmlChar(text[j]))
                    {
                        b.Append(text[j]);
                    }
                    else if (char.IsHighSurrogate(text[j]) && j + 1 < text.Length &&
                             XmlConvert.IsXmlSurrogatePair(text[j + 1], text[j]))
                    {
                        b.Append(text[j]).Append(text[j + 1]);
                        j++;
                    }
                }

                return b.ToString();
            }

            if (char.IsHighSurrogate(text[i]))
            {
                i++;
            }
        }

        return text;
    }
}
