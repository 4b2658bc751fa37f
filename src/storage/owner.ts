/** The host user and group a file, or a session's processes, belong to. */
export interface Owner {
  uid: number;
  gid: number;
}
