//! An SMTP server for the email tests, in this process on a loopback port: it speaks what
//! lettre needs (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT; no
//! STARTTLS or AUTH, which the tests do not use) and keeps every message it accepts, read
//! as a mail client reads it (envelope, decoded headers, text and HTML parts).

use std::net::SocketAddr;
use std::sync::Arc;

use mailparse::{MailHeaderMap, ParsedMail};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A message as the sink accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message after dot-unstuffing, as it was sent.
    pub data: Vec<u8>,
}

/// What a mail client shows of a [`Mail`]: decoded headers and parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub message_id: Option<String>,
    pub content_type: String,
    /// The `text/plain` and `text/html` parts, decoded.
    pub text: Option<String>,
    pub html: Option<String>,
}

impl Mail {
    /// Parses the message; panics (failing the test) if it is not valid MIME.
    pub fn shown(&self) -> Shown {
        let parsed = mailparse::parse_mail(&self.data).expect("the message is valid MIME");
        let header = |name: &str| parsed.headers.get_first_value(name);
        let mut text = None;
        let mut html = None;
        collect_parts(&parsed, &mut text, &mut html);
        Shown {
            subject: header("Subject"),
            from: header("From"),
            to: header("To"),
            message_id: header("Message-ID"),
            content_type: parsed.ctype.mimetype.clone(),
            text,
            html,
        }
    }
}

fn collect_parts(part: &ParsedMail<'_>, text: &mut Option<String>, html: &mut Option<String>) {
    match part.ctype.mimetype.as_str() {
        "text/plain" if text.is_none() => *text = part.get_body().ok(),
        "text/html" if html.is_none() => *html = part.get_body().ok(),
        _ => {}
    }
    for sub in &part.subparts {
        collect_parts(sub, text, html);
    }
}

/// The running sink; stops when dropped.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on `127.0.0.1:port` (0: any free port).
    pub async fn start(port: u16) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("a loopback port for the SMTP sink");
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let mails = mails.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(session(stream, mails.clone()));
                }
            })
        };
        SmtpSink { addr, mails, task }
    }

    /// Every message accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().clone()
    }
}

/// The address inside `FROM:<...>` or `TO:<...>` (parameters after it are ignored).
fn address(arg: &str) -> Option<String> {
    let start = arg.find('<')?;
    let end = arg[start..].find('>')? + start;
    Some(arg[start + 1..end].to_owned())
}

/// One client connection, until QUIT or the client goes away.
async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut reply = async |text: &str| write.write_all(text.as_bytes()).await.is_ok();
    if !reply("220 sink.test ESMTP ready\r\n").await {
        return;
    }
    let mut from: Option<String> = None;
    let mut rcpt: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_owned();
        let (verb, arg) = command.split_once(' ').unwrap_or((&command, ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 10485760\r\n",
            "HELO" => "250 sink.test\r\n",
            "MAIL" => match address(arg) {
                Some(a) => {
                    from = Some(a);
                    rcpt.clear();
                    "250 OK\r\n"
                }
                None => "501 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&from, address(arg)) {
                (None, _) => "503 MAIL first\r\n",
                (Some(_), Some(a)) => {
                    rcpt.push(a);
                    "250 OK\r\n"
                }
                (Some(_), None) => "501 Syntax: RCPT TO:<address>\r\n",
            },
            "DATA" if from.is_none() || rcpt.is_empty() => "503 MAIL and RCPT first\r\n",
            "DATA" => {
                if !reply("354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let Some(data) = read_data(&mut read).await else {
                    return;
                };
                mails.lock().push(Mail {
                    mail_from: from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut rcpt),
                    data,
                });
                "250 OK: queued\r\n"
            }
            "RSET" => {
                from = None;
                rcpt.clear();
                "250 OK\r\n"
            }
            "NOOP" => "250 OK\r\n",
            "QUIT" => {
                let _ = reply("221 Bye\r\n").await;
                return;
            }
            _ => "502 Command not implemented\r\n",
        };
        if !reply(answer).await {
            return;
        }
    }
}

/// The lines of a DATA section up to the lone `.`, with one leading dot taken off every
/// line that starts with one (RFC 5321 §4.5.2). `None` if the client goes away.
async fn read_data(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(data);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

#[tokio::test]
async fn the_sink_unstuffs_dots_and_keeps_the_envelope() {
    let sink = SmtpSink::start(0).await;
    let stream = TcpStream::connect(sink.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220 "), "{line}");
    let script = "EHLO client\r\nMAIL FROM:<a@example.com> BODY=8BITMIME\r\n\
                  RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n";
    write.write_all(script.as_bytes()).await.unwrap();
    let mut replies = Vec::new();
    while replies
        .last()
        .is_none_or(|l: &String| !l.starts_with("354"))
    {
        line.clear();
        read.read_line(&mut line).await.unwrap();
        replies.push(line.clone());
    }
    write
        .write_all(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n")
        .await
        .unwrap();
    line.clear();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("250 "), "{line}");
    line.clear();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("221 "), "{line}");
    assert_eq!(
        sink.mails(),
        vec![Mail {
            mail_from: "a@example.com".into(),
            rcpt_to: vec!["b@example.com".into(), "c@example.com".into()],
            data: b"Subject: dots\r\n\r\n.leading dot\r\n".to_vec(),
        }]
    );
    assert_eq!(sink.mails()[0].shown().subject.as_deref(), Some("dots"));
}
