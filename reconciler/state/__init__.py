"""The state: its format (`model`), the journal's operations (`journal`), bytes and files
(`codec`), the lock policy (`lock`), the one store protocol (`store`) with its two stores (`local`,
`gcs`), and the recorder apply writes through (`recorder`)."""
