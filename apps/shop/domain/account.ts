/** A customer's account, made at signup; its id is what orders carry as `customerId`. */
export interface Account {
  readonly id: string;
  /** In lower case. */
  readonly email: string;
  readonly name: string;
  readonly createdAt: string;
}
