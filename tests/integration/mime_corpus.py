"""A corpus of real-world-shaped messages for the IMAP differential test: what mail
clients, mailing lists and broken senders actually produce. Deterministic bytes, CRLF."""
import base64
import quopri


def _crlf(text):
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _b64(data, width=76):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width))


PDF = bytes(range(256)) * 12
PNG = _b64(b"\x89PNG fake image data")
LATIN1 = "Grüße aus Köln, das Büro ist geöffnet.\n".encode("latin-1")


def corpus():
    m = []
    # 1. the plainest message: no MIME headers at all
    m.append(_crlf("From: alice@example.org\nTo: bob@example.net\nSubject: hello\n"
                   "Date: Mon, 2 Jan 2023 10:00:00 +0100\nMessage-ID: <1@example.org>\n\nHi Bob.\nBye.\n"))
    # 2. UTF-8 8bit body, encoded words (Q and B), several recipients, Cc, Reply-To, In-Reply-To
    m.append(_crlf("From: =?UTF-8?Q?Andr=C3=A9_M=C3=BCller?= <andre@example.org>\n"
                   "To: \"Bob, Jr.\" <bob@example.net>, carol@example.com (Carol C)\n"
                   "Cc: Dave <dave@example.com>\nReply-To: list@example.org\n"
                   "Subject: =?UTF-8?B?w5xiZXJwcsO8ZnVuZyBkZXIgUmVjaG51bmc=?=\n"
                   "Date: Tue, 3 Jan 2023 11:30:00 -0500\nMessage-ID: <2@example.org>\n"
                   "In-Reply-To: <1@example.org>\nMIME-Version: 1.0\n"
                   "Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 8bit\n\n"
                   "Die Rechnung für März ist überprüft.\nGrüße\n"))
    # 3. multipart/alternative, quoted-printable text and HTML
    qp = quopri.encodestring("Prices: 100€ per unit — final offer. A long line that certainly goes beyond "
                             "the seventy-six characters a quoted-printable line may hold.\n".encode()).decode()
    m.append(_crlf("From: Shop <shop@example.com>\nTo: bob@example.net\nSubject: Offer\n"
                   "Date: Wed, 4 Jan 2023 09:15:00 +0000\nMessage-ID: <3@example.com>\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/alternative; boundary=\"alt-1\"\n\n"
                   "This is a multi-part message in MIME format.\n--alt-1\n"
                   "Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n"
                   f"{qp}\n--alt-1\nContent-Type: text/html; charset=\"utf-8\"\n"
                   "Content-Transfer-Encoding: quoted-printable\n\n"
                   "<html><body><p>Prices: 100=E2=82=AC per unit</p></body></html>\n--alt-1--\n"))
    # 4. mixed: alternative + a PDF attachment (base64, RFC 2231 filename) + an inline image
    m.append(_crlf("From: Carol <carol@example.com>\nTo: bob@example.net\nSubject: Report attached\n"
                   "Date: Thu, 5 Jan 2023 14:00:00 +0200\nMessage-ID: <4@example.com>\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed;\n boundary=\"==mixed==\"\n\n--==mixed==\n"
                   "Content-Type: multipart/alternative; boundary=\"==alt==\"\n\n--==alt==\n"
                   "Content-Type: text/plain; charset=us-ascii\n\nSee the report.\n--==alt==\n"
                   "Content-Type: text/html; charset=us-ascii\n\n<p>See the report.</p>\n--==alt==--\n\n"
                   "--==mixed==\nContent-Type: application/pdf; name=\"report.pdf\"\n"
                   "Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf; size=3072\n"
                   "Content-Transfer-Encoding: base64\nContent-Description: Quarterly report\n"
                   f"Content-ID: <pdf1@example.com>\n\n{_b64(PDF)}\n--==mixed==\n"
                   "Content-Type: image/png\nContent-Disposition: inline; filename=\"dot.png\"\n"
                   "Content-Transfer-Encoding: base64\nContent-Language: en, de\n"
                   "Content-Location: http://example.com/dot.png\n\n"
                   f"{PNG}\n--==mixed==--\n"))
    # 5. a forwarded message (message/rfc822) that is itself multipart
    inner = ("From: Eve <eve@example.net>\nTo: carol@example.com\nSubject: =?ISO-8859-1?Q?Caf=E9?= meeting\n"
             "Date: Fri, 30 Dec 2022 08:00:00 +0000\nMessage-ID: <inner@example.net>\nMIME-Version: 1.0\n"
             "Content-Type: multipart/mixed; boundary=inner\n\n--inner\nContent-Type: text/plain\n\n"
             "Meet at the café?\n--inner\nContent-Type: text/csv; name=list.csv\n\na,b\n1,2\n--inner--\n")
    m.append(_crlf("From: Carol <carol@example.com>\nTo: bob@example.net\nSubject: Fwd: Café meeting\n"
                   "Date: Fri, 6 Jan 2023 16:45:00 +0000\nMessage-ID: <5@example.com>\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n"
                   "Content-Type: text/plain; charset=utf-8\n\nForwarding this.\n--outer\n"
                   "Content-Type: message/rfc822\nContent-Disposition: inline\n\n" + inner + "\n--outer--\n"))
    # 6. three levels deep: mixed > alternative > related (HTML with a cid: image)
    m.append(_crlf("From: news@example.org\nTo: bob@example.net\nSubject: Newsletter\n"
                   "Date: Sat, 7 Jan 2023 07:00:00 +0000\nMessage-ID: <6@example.org>\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed; boundary=a\n\n--a\n"
                   "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain\n"
                   "--b\nContent-Type: multipart/related; boundary=c; type=\"text/html\"\n\n--c\n"
                   "Content-Type: text/html\n\n<img src=\"cid:logo\">\n--c\nContent-Type: image/gif\n"
                   "Content-ID: <logo>\nContent-Transfer-Encoding: base64\n\nR0lGODlhAQABAAAAACw=\n--c--\n"
                   "--b--\n--a\nContent-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment\n\n"
                   "notes\n--a--\n"))
    # 7. broken: multipart without a boundary parameter
    m.append(_crlf("From: broken@example.org\nTo: bob@example.net\nSubject: no boundary\n"
                   "Date: Sun, 8 Jan 2023 12:00:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n\n"
                   "--x\nContent-Type: text/plain\n\nbody\n--x--\n"))
    # 8. broken: the boundary never appears
    m.append(_crlf("From: broken@example.org\nTo: bob@example.net\nSubject: missing delimiters\n"
                   "Date: Sun, 8 Jan 2023 12:05:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed; boundary=\"nowhere\"\n\njust text, no parts\n"))
    # 9. broken: the last part is never closed
    m.append(_crlf("From: broken@example.org\nTo: bob@example.net\nSubject: unterminated\n"
                   "Date: Sun, 8 Jan 2023 12:10:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed; boundary=\"open\"\n\npreamble\n--open\n"
                   "Content-Type: text/plain\n\nfirst part\n--open\nContent-Type: text/html\n\n<p>second, cut off\n"))
    # 10. group syntax and an empty group
    m.append(_crlf("From: Team Lead <lead@example.com>\nTo: undisclosed-recipients:;\n"
                   "Cc: Team: a@example.com, \"B. Person\" <b@example.com>;, outside@example.net\n"
                   "Subject: groups\nDate: Mon, 9 Jan 2023 10:00:00 +0000\nMessage-ID: <10@example.com>\n\ngroups\n"))
    # 11. quoted local part, comments, route-less angle address, a display name with a quote
    m.append(_crlf("From: \"john q. public\"@example.com\nSender: <sender@example.com>\n"
                   "To: \"O'Brien \\\"Ob\\\"\" <ob@example.com>, (comment only) plain@example.com\n"
                   "Subject: odd addresses\nDate: Tue, 10 Jan 2023 10:00:00 +0000\n\naddresses\n"))
    # 12. no Date, no Subject, no From
    m.append(_crlf("To: bob@example.net\nX-Mailer: script\n\nheaderless\n"))
    # 13. folded headers, tabs, duplicated Subject, odd case in Content-Type, extra parameters
    m.append(_crlf("From: Folded\n\tName <folded@example.org>\nTo: bob@example.net\n"
                   "Subject: a subject line that has been folded\n  across two lines\nSubject: a second subject\n"
                   "Date: Wed, 11 Jan 2023 10:00:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: TEXT/Plain; CharSet=\"ISO-8859-1\"; Delsp=Yes; format=flowed\n"
                   "Content-Transfer-Encoding: 8BIT\n\n") + _crlf(LATIN1))
    # 14. HTML only, Latin-1 quoted-printable
    m.append(_crlf("From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>\nTo: bob@example.net\n"
                   "Subject: =?iso-8859-1?q?Gr=FC=DFe?= und =?UTF-8?B?8J+Ygg==?=\n"
                   "Date: Thu, 12 Jan 2023 10:00:00 +0100\nMIME-Version: 1.0\n"
                   "Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
                   "<p>Gr=FC=DFe aus K=F6ln</p>\n"))
    # 15. an empty body
    m.append(_crlf("From: empty@example.org\nTo: bob@example.net\nSubject: empty\n"
                   "Date: Fri, 13 Jan 2023 10:00:00 +0000\n\n"))
    # 16. multipart/signed with a detached signature
    m.append(_crlf("From: signer@example.org\nTo: bob@example.net\nSubject: signed\n"
                   "Date: Sat, 14 Jan 2023 10:00:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\";"
                   " boundary=\"sig\"\n\n--sig\nContent-Type: text/plain; charset=us-ascii\n\nsigned text\n"
                   "--sig\nContent-Type: application/pgp-signature; name=\"signature.asc\"\n"
                   "Content-Description: OpenPGP digital signature\n\n-----BEGIN PGP SIGNATURE-----\n"
                   "iQEzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n--sig--\n"))
    # 17. attachment with an encoded-word filename and octet-stream, inline disposition with params
    m.append(_crlf("From: files@example.org\nTo: bob@example.net\nSubject: files\n"
                   "Date: Sun, 15 Jan 2023 10:00:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/mixed; boundary=\"f\"\n\n--f\n\nno headers in this part\n--f\n"
                   "Content-Type: application/octet-stream; name=\"=?UTF-8?Q?d=C3=A9j=C3=A0.bin?=\"\n"
                   "Content-Disposition: inline; filename=\"=?UTF-8?Q?d=C3=A9j=C3=A0.bin?=\";"
                   " modification-date=\"Sun, 15 Jan 2023 10:00:00 +0000\"\n"
                   "Content-Transfer-Encoding: base64\n\n" + _b64(b"\x00\x01\x02binary") + "\n--f--\n"))
    # 18. unusual dates and raw 8-bit UTF-8 in headers (SMTPUTF8 style)
    m.append(_crlf("From: Zoë <zoe@example.org>\nTo: bob@example.net\nSubject: Ünïcödé without encoding\n"
                   "Date: 1 Feb 2023 23:59:59 EST\n\nraw utf-8 header\n"))
    # 19. a longer message for partial fetches and body search
    lines = "".join(f"line {i:04d} of the long message, searchable word{i}\n" for i in range(300))
    m.append(_crlf("From: long@example.org\nTo: bob@example.net\nSubject: long\n"
                   "Date: Mon, 16 Jan 2023 10:00:00 +0000\nMessage-ID: <19@example.org>\n"
                   "References: <1@example.org> <2@example.org>\n\n" + lines))
    # 20. a message/rfc822 part whose message has no MIME headers, plus a base64 text part
    m.append(_crlf("From: bounce@example.org\nTo: bob@example.net\nSubject: Undelivered Mail Returned to Sender\n"
                   "Date: Tue, 17 Jan 2023 10:00:00 +0000\nMIME-Version: 1.0\n"
                   "Content-Type: multipart/report; report-type=delivery-status; boundary=\"rep\"\n\n--rep\n"
                   "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
                   + _b64("Die Nachricht konnte nicht zugestellt werden: Postfach voll.\n".encode()) + "\n--rep\n"
                   "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
                   "Final-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.2.2\n--rep\n"
                   "Content-Type: message/rfc822\n\nFrom: bob@example.net\nTo: x@example.net\nSubject: original\n\n"
                   "the original text\n--rep--\n"))
    # 21. group syntax (RFC 5322 3.4, RFC 3501 7.4.2 group markers), an empty group, a
    #     quoted local part, a comment as a name, a source route
    m.append(_crlf("From: \"Quoted, Name\" <\"john.q public\"@example.org>\n"
                   "Sender: <@route.example:sender@example.org>\n"
                   "To: undisclosed-recipients:;\n"
                   "Cc: Team A: anna@team.example, \"Ben B\" <ben@team.example>;, solo@example.com\n"
                   "Bcc: (hidden) secret@example.net (Secret Person)\n"
                   "Reply-To: empty-group: ;\n"
                   "Subject: groups\nDate: Wed, 18 Jan 2023 10:00:00 +0000\nMessage-ID: <21@example.org>\n\n"
                   "groups of addresses\n"))
    # 22. more address forms: an encoded-word name, escaped quotes, angle brackets alone,
    #     a comment after the address, a group spread over a folded line
    m.append(_crlf("From: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= <gruss@example.org>\n"
                   "To: \"Bob \\\"the builder\\\"\" <bob@example.net>, <angle-only@example.net>,\n"
                   " plain@example.net (Plain Comment)\n"
                   "Cc: list: one@list.example,\n two@list.example;\n"
                   "Subject: forms\nDate: Thu, 19 Jan 2023 10:00:00 +0000\nMessage-ID: <22@example.org>\n\n"
                   "address forms\n"))
    # 23-32. a conversation for THREAD and SORT (RFC 5256): replies by In-Reply-To and by
    #     References, a missing parent, a forward with list tags and "(fwd)", a duplicate
    #     Message-ID, a References loop, nested "Re: Re: [fwd: ...]", no Date at all
    def t(headers, n):
        return _crlf(headers + f"From: p{n}@example.org\nTo: team@example.net\n\nthread message {n}\n")
    m.append(t("Subject: Plans\nMessage-ID: <t1@x>\nDate: Mon, 6 Feb 2023 09:00:00 +0000\n", 23))
    m.append(t("Subject: Re: Plans\nMessage-ID: <t2@x>\nIn-Reply-To: <t1@x>\n"
               "Date: Mon, 6 Feb 2023 10:00:00 +0000\n", 24))
    m.append(t("Subject: RE: Plans\nMessage-ID: <t3@x>\nReferences: <t1@x> <t2@x>\n"
               "Date: Mon, 6 Feb 2023 08:00:00 -0400\n", 25))
    m.append(t("Subject: Re: Plans\nMessage-ID: <t4@x>\nReferences: <missing@x>\n"
               "Date: Mon, 6 Feb 2023 11:00:00 +0000\n", 26))
    m.append(t("Subject: [list] Fwd: Plans (fwd)\nDate: Mon, 6 Feb 2023 12:00:00 +0000\n", 27))
    m.append(t("Subject: Other\nMessage-ID: <t2@x>\nDate: Sun, 5 Feb 2023 09:00:00 +0000\n", 28))
    m.append(t("Subject: loop a\nMessage-ID: <la@x>\nReferences: <lb@x>\nDate: Tue, 7 Feb 2023 09:00:00 +0000\n", 29))
    m.append(t("Subject: loop b\nMessage-ID: <lb@x>\nReferences: <la@x>\nDate: Tue, 7 Feb 2023 09:30:00 +0000\n", 30))
    m.append(t("Subject: Re: Re: [fwd: Plans]\nDate: Wed, 8 Feb 2023 09:00:00 +0000\n", 31))
    m.append(t("Subject: unrelated\n", 32))
    return m
