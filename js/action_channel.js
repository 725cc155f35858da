// The action channel has no view: the job card and the queue monitor find its model by
// id and send page actions on it (see qnb/_widgets.py for why it is a comm of its own).
export default {
  initialize() {},
};
