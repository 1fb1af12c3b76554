/** uPlot and its stylesheet, in a chunk of their own: loaded by the first chart shown. */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export default uPlot;
